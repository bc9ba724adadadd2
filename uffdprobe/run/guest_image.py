"""The guest's Python from memory: the modules a guest `uffdprobe run` imports, as one folder tree that travels in
the initramfs and is copied to a tmpfs (/run/uffdprobe/py) before the guest's Python starts.

Under TCG each file the interpreter looks up or reads over the 9p host root is a round trip of milliseconds;
a run imports about 170 modules from a dozen folders. From the tmpfs those lookups cost nothing, and the host
root over 9p stays on the module path behind it for anything not in the image (users' scenarios, --exec
programs, a module a rare path imports lazily).

What goes in: the whole uffdprobe package (its modules and data files, not data/), every standard-library
package or module its run path imports (the closure, found by importing that path in a fresh `python -S`
here), and the extension modules among them (lib-dynload, _cffi_backend). Modules travel as bytecode alone
(a sourceless NAME.pyc where NAME.py would be, unchecked hashes: nothing is compared with a source), and
their code objects name the host's source file, which a traceback then reads over 9p. Built once per content (file sizes and times) and Python, cached under the VM cache.
"""
import hashlib
import json
import os
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Optional

from uffdprobe.osutil import datafiles

#: Where the guest finds the image (guest_mounts.sh mounts a tmpfs on /run; the initramfs copies it there).
GUEST_DIR = "/run/uffdprobe/py"
#: The initramfs folder the image travels in.
INITRAMFS_DIR = "py"
PROBE_TIMEOUT = 60.0
#: What a guest run imports at module level: everything else of the run path follows from these.
ENTRY = ("uffdprobe.cli.main", "uffdprobe.cli.run", "uffdprobe.run.host",
         "uffdprobe.supervise.supervisor", "uffdprobe.scenarios.registry", "uffdprobe.scenarios.api",
         "uffdprobe.uffd._native")
#: Standard-library names the run path imports inside functions (json for verdicts, threading for the
#: supervisor's watchers, ...): found by reading the package's import statements, minus these never needed.
_NEVER = {"tkinter", "idlelib", "turtle", "turtledemo", "test", "ensurepip", "lib2to3", "pydoc", "pydoc_data",
          "venv", "distutils", "unittest", "doctest", "sqlite3", "curses", "xml", "email", "http", "urllib",
          "asyncio", "multiprocessing", "concurrent", "compileall", "py_compile", "zipfile", "tarfile",
          "sysconfig", "site"}

_PROBE = r"""
import importlib, json, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(json.dumps({n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}))
"""


def build(cache_dir: Path, module_path: List[str]) -> Optional[Path]:
    """The cached image folder for this uffdprobe and Python (built now if missing), or None where it cannot be
    made (a Python without sys.stdlib_module_names, a failed probe, a full or read-only cache): the guest then
    imports over 9p as before, and the boot's own checks say what is wrong with the cache."""
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:
        return None
    target = Path(cache_dir) / f"pyimage-{_key(module_path)}"
    if target.is_dir():
        return target
    try:
        files = _closure(module_path, sorted(set(ENTRY) | (_lazy_stdlib_imports() & set(names)) - _NEVER))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    plan = _plan(files, set(names))
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
    try:
        _write(plan, staging)
    except (OSError, py_compile.PyCompileError):  # a full or read-only cache: the guest imports over 9p
        shutil.rmtree(staging, ignore_errors=True)
        return None
    try:
        os.rename(staging, target)
    except OSError:  # another process made it first: theirs is the same content
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write(plan: Dict[str, str], staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    for dest, src in plan.items():
        out = staging / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        if dest.endswith(".py"):  # bytecode alone, where the source would be; tracebacks name the host's file
            py_compile.compile(src, cfile=str(out) + "c", dfile=src, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        else:
            shutil.copyfile(src, out)


def _key(module_path: List[str]) -> str:
    """What the image depends on, cheaply: this Python (version, executable, standard library folder) and
    module path, and every file of the uffdprobe package by size and time."""
    key = hashlib.sha256(f"{sys.version}\0{sys.executable}\0{module_path}".encode())
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    package = datafiles.PACKAGE_PARENT / "uffdprobe"
    for path in [Path(sys.executable).resolve(), stdlib, *sorted(package.rglob("*"))]:
        if "__pycache__" not in path.parts:
            st = path.stat()
            key.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return key.hexdigest()[:20]


def _closure(module_path: List[str], names: List[str]) -> Dict[str, str]:
    """{module name: file} of everything a fresh `python -S` on the guest's module path loads for `names`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(module_path))
    proc = subprocess.run([sys.executable, "-S", "-c", _PROBE, *names], capture_output=True, text=True,
                          timeout=PROBE_TIMEOUT, check=True, env=env, stdin=subprocess.DEVNULL, cwd="/")
    return {n: f for n, f in json.loads(proc.stdout).items() if f}


def _lazy_stdlib_imports() -> set:
    """Top-level names of every import statement in the run path's packages (function-level ones included)."""
    import ast
    package = datafiles.PACKAGE_PARENT / "uffdprobe"
    found = set()
    for sub in ("", "osutil", "uffd", "scenarios", "supervise", "results", "run", "cli"):
        for path in (package / sub).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found


def _plan(files: Dict[str, str], stdlib: set) -> Dict[str, str]:
    """{path inside the image: host file}: uffdprobe whole (but data/), stdlib packages whole, single
    stdlib modules and extension modules as they are."""
    plan: Dict[str, str] = {}
    stdlib_dirs = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    package = datafiles.PACKAGE_PARENT / "uffdprobe"
    for path in package.rglob("*"):
        rel = path.relative_to(package)
        if path.is_file() and rel.parts[0] != "data" and "__pycache__" not in rel.parts \
                and path.suffix not in (".pyc", ".pyi"):
            plan[str(Path("uffdprobe") / rel)] = str(path)
    for name, file in files.items():
        top = name.split(".")[0]
        if top == "uffdprobe":
            continue
        if top == "_cffi_backend":
            plan[Path(file).name] = file
        elif top in stdlib and any(file.startswith(d + os.sep) for d in stdlib_dirs):
            root = next(Path(d) for d in stdlib_dirs if file.startswith(d + os.sep))
            rel = Path(file).relative_to(root)
            if rel.parts[0] == "lib-dynload":
                plan[rel.name] = file
            elif len(rel.parts) > 1:  # a package: all of it, so no submodule goes missing
                for sub in (root / rel.parts[0]).rglob("*.py"):
                    if not {"__pycache__", "test", "tests", "idle_test"} & set(sub.parts):
                        plan[str(sub.relative_to(root))] = str(sub)
            else:
                plan[str(rel)] = file
    return plan
