# SPDX-License-Identifier: GPL-2.0-only
"""The one archive the guest's Python imports the run path from (run.guest_start serves it).

Built on the host once per interpreter, module path and uffdprobe source, and cached under the uffdprobe
cache (guest-python/): the modules a guest `uffdprobe run` imports (ENTRY and everything they import,
recorded by importing them in a fresh `python -S` with the guest's PYTHONPATH), compiled here, with the
host path of every extension module among them. Its manifest names every file it was made from with
size and mtime; a stale archive (one of them changed) is rebuilt, never used. Written whole: to a
temporary file, then renamed.

The archive is marshal data: (guest_start's code, {module: (host path, kind, bytecode)}, {(builtin, text):
bytecode}, manifest), the third being the source texts guest_start.GENERATED's modules generated while
the modules were recorded, compiled. The interpreter that reads it is the one that wrote it (its version
and path are in the cache key).
"""

import contextlib
import hashlib
import json
import marshal
import os
import stat
import subprocess
import sys
import time
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Dict, List, Tuple

from uffdprobe.exitcodes import UffdprobeError
from uffdprobe.osutil import datafiles
from uffdprobe.osutil.files import write_atomic
from uffdprobe.vm.paths import cache_root
from . import guest_start

#: The modules a guest run imports, at their top and inside functions, recorded from `python -S -X
#: importtime -m uffdprobe run --memory anon-4k wp-gup-vmsplice` (the guest's command line, run on the
#: host): uffdprobe's run path, and the standard-library modules it imports only inside functions
#: (importlib.metadata: scenarios.sources reads the entry points; _sha256: the config hash). What these
#: import comes along; a module missing here is still found, on the host folders.
ENTRY = tuple(
    """
    uffdprobe uffdprobe.cli uffdprobe.cli.errors uffdprobe.cli.execopts uffdprobe.cli.main uffdprobe.cli.run
    uffdprobe.cli.user_scenarios uffdprobe.cli.vocab uffdprobe.exitcodes uffdprobe.osutil uffdprobe.osutil.children
    uffdprobe.osutil.datafiles uffdprobe.osutil.files uffdprobe.osutil.kmsg uffdprobe.osutil.lifetime
    uffdprobe.osutil.outputs uffdprobe.osutil.procs uffdprobe.osutil.swap uffdprobe.results
    uffdprobe.results.evidence uffdprobe.results.expect uffdprobe.results.kcidb uffdprobe.results.matrix
    uffdprobe.results.report uffdprobe.run uffdprobe.run.child_report uffdprobe.run.exec_row uffdprobe.run.host
    uffdprobe.run.kcidb_out uffdprobe.run.plan uffdprobe.run.request uffdprobe.run.selftests uffdprobe.scenarios
    uffdprobe.scenarios.catalogue uffdprobe.scenarios.common uffdprobe.scenarios.context
    uffdprobe.scenarios.copy_wp_readonly uffdprobe.scenarios.cow_leak uffdprobe.scenarios.cow_leak_reverse
    uffdprobe.scenarios.defect uffdprobe.scenarios.harness_checks uffdprobe.scenarios.import_trial
    uffdprobe.scenarios.memkinds uffdprobe.scenarios.minor_continue uffdprobe.scenarios.move_defects
    uffdprobe.scenarios.move_scan uffdprobe.scenarios.mremap_wp uffdprobe.scenarios.pte_markers
    uffdprobe.scenarios.racy uffdprobe.scenarios.registry uffdprobe.scenarios.release_gup uffdprobe.scenarios.rows
    uffdprobe.scenarios.scan_defects uffdprobe.scenarios.shared_wp uffdprobe.scenarios.sources
    uffdprobe.scenarios.swapoff_wp uffdprobe.scenarios.umap_buffer uffdprobe.scenarios.umap_evict
    uffdprobe.scenarios.victim uffdprobe.scenarios.wp_cow_inherit uffdprobe.scenarios.wp_gup
    uffdprobe.scenarios.wp_real_write uffdprobe.scenarios.zeropage_split_wp uffdprobe.supervise
    uffdprobe.supervise.kselftest uffdprobe.supervise.kselftest_output uffdprobe.supervise.loop
    uffdprobe.supervise.procfs uffdprobe.supervise.progress uffdprobe.supervise.protocol uffdprobe.supervise.rescue
    uffdprobe.supervise.splat uffdprobe.supervise.supervisor uffdprobe.supervise.tasks uffdprobe.supervise.workload
    uffdprobe.uffd uffdprobe.uffd._ffi uffdprobe.uffd._native uffdprobe.uffd.blockdev uffdprobe.uffd.errors
    uffdprobe.uffd.features uffdprobe.uffd.flags uffdprobe.uffd.memory uffdprobe.uffd.messages
    uffdprobe.uffd.odirect uffdprobe.uffd.pagemap uffdprobe.uffd.programs uffdprobe.uffd.userfaultfd
    uffdprobe.verdicts importlib.metadata textwrap _sha256
    """.split()
)
RECORD_TIMEOUT = 120.0
_RECORD = """
import builtins, sys
missed = set()
class Missed:  # first: importing dataclasses below looks for modules that are not there (copy: org.python)
    @staticmethod
    def find_spec(name, path=None, target=None):
        missed.add(name)
sys.meta_path.append(Missed)
texts = []
def keeper(builtin, run):
    def keep(source, *rest):
        if type(source) is str:
            texts.append([builtin, source])
        return run(source, *rest)
    return keep
for pair in sys.argv[1].split(","):  # before any other import: json's makes namedtuples
    name, builtin = pair.split("=")
    __import__(name)
    setattr(sys.modules[name], builtin, keeper(builtin, getattr(builtins, builtin)))
import json, os
for name in sys.argv[2:]:
    try:
        __import__(name)
    except Exception:
        pass
found = {}
for name, module in list(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None)
    if name != "__main__" and isinstance(origin, str) and os.path.isabs(origin):
        found[name] = [origin, spec.submodule_search_locations is not None]
print(json.dumps({"found": found, "missed": sorted(missed), "texts": texts}))
"""

Table = Dict[str, Tuple[str, str, bytes]]
Texts = Dict[Tuple[str, str], bytes]
Manifest = List[Tuple[str, int, int]]


def path(module_path: List[str]) -> Path:
    """Where the archive for this interpreter, this module path and this uffdprobe source is cached."""
    key = hashlib.sha256()
    for part in (sys.version, sys.executable, sys.implementation.cache_tag, *module_path, *ENTRY, _RECORD):
        key.update(part.encode() + b"\0")
    key.update(Path(guest_start.__file__).read_bytes())
    package = datafiles.PACKAGE_PARENT / "uffdprobe"
    for source in sorted(package.rglob("*.py")):
        key.update(str(source.relative_to(package)).encode() + b"\0" + source.read_bytes())
    return cache_root() / "guest-python" / f"run-{key.hexdigest()[:20]}.marshal"


#: An archive no run has used for this long is removed when another one is built: each change to an
#: editable checkout's source makes a new archive (about 4 MB), which nothing else would ever remove.
UNUSED_S = 86400.0


def ensure(module_path: List[str]) -> Path:
    """The archive for `module_path`, built now when it is missing or stale (then the archives no run
    has used for UNUSED_S are removed); its mtime says when a run last used it."""
    target = path(module_path)
    if fresh(target):
        with contextlib.suppress(OSError):  # a read-only cache still serves it
            os.utime(target)
        return target
    write_atomic(target, build(module_path))
    cutoff = time.time() - UNUSED_S
    for old in target.parent.glob("run-*.marshal"):
        with contextlib.suppress(OSError):  # another run's removal or use won
            st = old.lstat()  # a link (or anything but a regular file) is not ours to remove
            if old != target and stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                old.unlink()
    return target


def fresh(target: Path) -> bool:
    """Whether `target` is an archive whose every source file is as it was when it was built."""
    try:
        manifest = marshal.loads(target.read_bytes())[-1]
        return all(_stamp(name) == (name, size, mtime) for name, size, mtime in manifest)
    except (OSError, ValueError, EOFError, TypeError):
        return False


def build(module_path: List[str]) -> bytes:
    """The archive's bytes: record what ENTRY imports under the guest's module path, compile it."""
    table: Table = {}
    manifest: Manifest = [_stamp(folder) for folder in module_path if os.path.isdir(folder)]  # installs, removals
    found, missed, generated = record(module_path)
    for name in missed:  # looked for and not there (another platform's): no search in the guest
        if "." not in name:  # a top-level name: the module path's folders' stamps cover its coming
            table[name] = ("", "absent", b"")
    for name, (origin, is_package) in sorted(found.items()):
        if origin.endswith(".py"):
            source = Path(origin).read_bytes()
            code = compile(source, origin, "exec", dont_inherit=True)
            table[name] = (origin, "pkg" if is_package else "py", marshal.dumps(code))
        elif origin.endswith(tuple(EXTENSION_SUFFIXES)):
            table[name] = (origin, "ext", b"")
        else:
            continue
        manifest.append(_stamp(origin))
    # compiled as exec() and eval() compile a text: named "<string>", no flags of ours
    texts: Texts = {
        (builtin, text): marshal.dumps(compile(text, "<string>", builtin, dont_inherit=True))
        for builtin, text in generated
    }
    start = compile(Path(guest_start.__file__).read_bytes(), guest_start.__file__, "exec", dont_inherit=True)
    return marshal.dumps((start, table, texts, manifest))


def record(module_path: List[str]) -> Tuple[Dict[str, Tuple[str, bool]], List[str], List[Tuple[str, str]]]:
    """What ENTRY imports in `python -S` with `module_path`: {module: (host file, is a package)}, the
    modules looked for and not found, and the (builtin, text) pairs guest_start.GENERATED's modules ran."""
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-S",
                "-c",
                _RECORD,
                ",".join(f"{m}={b}" for m, b in guest_start.GENERATED.items()),
                *ENTRY,
            ],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(module_path)),
            capture_output=True,
            text=True,
            timeout=RECORD_TIMEOUT,
            check=True,
            stdin=subprocess.DEVNULL,
            cwd="/",
        )
        data = json.loads(proc.stdout)
        found = {name: (origin, bool(pkg)) for name, (origin, pkg) in data["found"].items()}
        return found, list(data["missed"]), [(builtin, text) for builtin, text in data["texts"]]
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise UffdprobeError(f"cannot record the guest's modules with {sys.executable}: {exc}") from None


def _stamp(name: str) -> Tuple[str, int, int]:
    st = os.stat(name)
    return name, st.st_size, st.st_mtime_ns
