# SPDX-License-Identifier: GPL-2.0-only
"""The C programs uffdprobe ships for `--exec` (native/): where each one's executable is. An installed
package carries them built at install time (setup.py, next to bench_missing); a checkout compiles each
source once into the cache, `$XDG_CACHE_HOME/uffdprobe/native/HASH/NAME` (a report row is named after the program's file name), a path
a guest can see (the
guest root is the host root)."""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Tuple

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil import datafiles
from uffdprobe.osutil.files import cache_home

#: name -> (its C source in native/, what it is)
PROGRAMS: Dict[str, Tuple[str, str]] = {
    "umapsort-repro": (
        "umapsort_repro.c",
        "the umapsort eviction hang: a uffd service thread write-protects a page and writes "
        "it with O_DIRECT itself (HANG where GUP breaks COW for reads, PASS elsewhere)",
    ),
}


def path(name: str) -> Path:
    """The executable of shipped program `name`: built at install time, else compiled now (once)."""
    source, _ = PROGRAMS[name]
    built = datafiles.native() / name
    if os.access(built, os.X_OK) and not built.is_dir():
        return built
    return compile_c(datafiles.native() / source, name)


def compile_c(source: Path, name: str) -> Path:
    """`source` compiled (-O2 -pthread) into the cache as HASH/NAME (content hash of the source), written
    whole by a rename; the same path for everybody who asks again."""
    import hashlib  # here: the guest's run path imports this module, and hashlib loads OpenSSL
    import tempfile

    data = source.read_bytes()
    folder = cache_home() / "uffdprobe" / "native" / hashlib.sha256(data).hexdigest()[:12]
    exe = folder / name
    if os.access(exe, os.X_OK):
        return exe
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise UsageError(
            f"{name} is compiled from {source} on first use and there is no C compiler: apt-get install gcc"
        )
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=folder)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, "-O2", "-Wall", "-pthread", "-o", tmp, str(source)], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise UsageError(f"compiling {source} failed: {proc.stderr.strip().splitlines()[-1:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, exe)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return exe
