# SPDX-License-Identifier: GPL-2.0-only
"""How the guest starts Python: the host's interpreter, told its module path up front, the run path's
modules from one archive in memory (run.guest_archive, run.guest_start).

Under TCG every module a guest process imports costs tens of milliseconds, and compiling one from source
costs more. So the guest's Python skips `site` (-S: no .pth files, no editable-install finder, which
alone imports pathlib, urllib and re), gets the very module path a fresh interpreter on the host has
(PYTHONPATH), and finds uffdprobe compiled: precompile() writes its __pycache__ on the host before the
boot (the guest sees the same files read-only and can write none).
"""

import compileall
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

from uffdprobe.osutil import datafiles

PATH_PROBE_TIMEOUT = 30.0


@functools.lru_cache(maxsize=None)
def module_path() -> List[str]:
    """The folders the guest's Python imports from: the one holding the uffdprobe package, then what
    sys.path is for a fresh interpreter here (with site: venv, .pth and user folders; not our own
    sys.path, which pytest and scripts change), minus the script folder."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
            capture_output=True,
            text=True,
            timeout=PATH_PROBE_TIMEOUT,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        fresh = json.loads(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):  # then ours, which holds at least as much
        fresh = sys.path
    found = [str(datafiles.PACKAGE_PARENT)] + [p for p in fresh if os.path.isabs(p)]
    return list(dict.fromkeys(found))


def interpreter() -> List[str]:
    """The argv prefix that starts the host's Python in the guest: `env PYTHONPATH=... python -S`."""
    return ["/usr/bin/env", f"PYTHONPATH={os.pathsep.join(module_path())}", sys.executable, "-S"]


def precompile() -> None:
    """Bring the package's bytecode up to date where the package folder is writable (a checkout, an
    editable install); elsewhere (a wheel install compiled by pip, a read-only folder) do nothing."""
    package = datafiles.PACKAGE_PARENT / "uffdprobe"
    if os.access(package, os.W_OK):
        compileall.compile_dir(str(package), quiet=2, workers=1)


#: Where the guest finds the archive of its modules: brought into the run's results channel.
ARCHIVE_NAME = "python-modules.marshal"
#: What the guest's `python -S -c` runs first: the archive's modules served from memory (run.guest_start),
#: or, when the archive cannot be read, nothing (every import then comes from the host folders).
_START = """import sys
try:
    import marshal
    with open({archive!r}, "rb") as f:
        _start, _table, _texts, _ = marshal.loads(f.read())
    exec(_start)
    install({archive!r}, _table, _texts)
    del _start, _table, _texts
except OSError:
    pass
"""
#: What follows _START for `uffdprobe ARGS...` (as `python -m uffdprobe ARGS...` does).
_CLI = "from uffdprobe.cli.main import console\nsys.exit(console())\n"
#: What follows _START for `SCRIPT ARGS...` (a script run as __main__, with sys.argv as for `python SCRIPT`).
_SCRIPT = (
    "del sys.argv[0]\n"
    "with open(sys.argv[0], 'rb') as f:\n"
    "    exec(compile(f.read(), sys.argv[0], 'exec'), {'__name__': '__main__', '__file__': sys.argv[0]})\n"
)


def archive() -> Path:
    """The archive of the guest run's modules for this interpreter and checkout (guest_archive), built
    now when missing or stale: boot() brings it into the channel as ARCHIVE_NAME."""
    from . import guest_archive

    return guest_archive.ensure(module_path())


def from_archive(guest_archive: str, script: bool = False) -> List[str]:
    """The argv prefix that starts `uffdprobe` (or, with `script`, the script that follows it) in the guest
    with the run path's modules from `guest_archive` (its path there) and the rest from the host folders."""
    code = _START.format(archive=guest_archive) + (_SCRIPT if script else _CLI)
    return [*interpreter(), "-c", code]
