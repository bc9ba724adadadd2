# SPDX-License-Identifier: GPL-2.0-only
"""A payload for lab boards: one zipapp that runs uffdprobe where only a Python 3.9+ and a libc are.

A LAVA or tuxrun job boots its own kernel on its own root filesystem and then runs a test there; it can copy
one file in, not install a package. So the payload is a single `uffdprobe.pyz` (PEP 441 zipapp): `python3
uffdprobe.pyz run --ktap -` asks the running kernel every scenario. It carries what this uffdprobe runs with,
as installed here: the package with its compiled bindings (`_native`, abi3: any CPython 3.9+) and its data
(recipes, guest scripts, C sources), psutil (abi3 as well) and cffi's backend, which is built per Python
version: the builder's own, plus any more taken from cffi wheels given with `cffi_wheels`. The Python sources
come with bytecode compiled for the builder's Python (unchecked-hash .pyc, valid however the files' times
are unpacked), so a guest under TCG does not compile them first. payload_main.py is the archive's __main__.
"""

import importlib.util
import io
import os
import py_compile
import stat
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, Sequence, Tuple

import uffdprobe
from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil import datafiles

#: The interpreter line: `./uffdprobe.pyz` runs like `python3 uffdprobe.pyz`.
SHEBANG = b"#!/usr/bin/env python3\n"
#: Never carried: build leftovers and bytecode of other interpreters (ours is compiled fresh).
SKIPPED_NAMES = {"__pycache__", ".pytest_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej")


def _files(root: Path) -> Iterator[Path]:
    """Every regular file under `root`, sorted, without SKIPPED_NAMES folders and SKIPPED_SUFFIXES files."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_NAMES)
        for name in sorted(names):
            path = Path(folder) / name
            if not name.endswith(SKIPPED_SUFFIXES) and path.is_file():
                yield path


def _module_location(name: str) -> Path:
    """The file (a module) or folder (a package) `name` is imported from here."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise UsageError(
            f"payload: {name} is not importable by this Python ({sys.executable}); install "
            f"uffdprobe with its dependencies (pip install uffdprobe) and build the payload again"
        )
    origin = Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def contents(cffi_wheels: Sequence[Path] = ()) -> Dict[str, Path]:
    """Archive path under site/ -> the file here that goes there: uffdprobe with its data, psutil, tomli
    where this Python needs it, cffi's backend of this Python and of each wheel in `cffi_wheels` (those are
    added by build(), not listed here)."""
    out: Dict[str, Path] = {}
    package = _module_location("uffdprobe")
    for path in _files(package):
        relative = path.relative_to(package)
        if relative.parts[0] != "data":  # data/ is taken from where datafiles reads it, below
            out[f"site/uffdprobe/{relative.as_posix()}"] = path
    for name, folder in (("vm-images", datafiles.vm_images()), ("native", datafiles.native())):
        for path in _files(folder):
            out[f"site/uffdprobe/data/{name}/{path.relative_to(folder).as_posix()}"] = path
    if not any(name.startswith("site/uffdprobe/uffd/_native.") for name in out):
        raise UsageError(
            "payload: this uffdprobe has no compiled bindings (uffdprobe/uffd/_native); build them "
            "first (pip install -e . or pip install uffdprobe)"
        )
    needed = ["psutil", "_cffi_backend"] + (["tomli"] if sys.version_info < (3, 11) else [])
    for name in needed:
        location = _module_location(name)
        if location.is_dir():
            for path in _files(location):
                out[f"site/{name}/{path.relative_to(location).as_posix()}"] = path
        else:
            out[f"site/{location.name}"] = location
    return out


def _wheel_backends(wheel: Path) -> Iterator[Tuple[str, bytes, int]]:
    """(archive path, bytes, mode) of every cffi backend (and the libraries it links, if any) in a cffi wheel."""
    try:
        with zipfile.ZipFile(wheel) as whl:
            members = [
                i
                for i in whl.infolist()
                if not i.is_dir()
                and (i.filename.startswith("_cffi_backend.") or i.filename.split("/")[0].endswith(".libs"))
            ]
            if not any(i.filename.startswith("_cffi_backend.") for i in members):
                raise UsageError(
                    f"payload: {wheel} holds no _cffi_backend module; give a cffi wheel for the "
                    f"board's Python (pip download --only-binary :all: --python-version 3.9 cffi)"
                )
            for info in members:
                yield f"site/{info.filename}", whl.read(info), 0o755
    except (OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"payload: cannot read the wheel {wheel}: {exc}") from exc


def _bytecode(source: Path, archive_name: str) -> Tuple[str, bytes]:
    """This Python's bytecode of `source` as an unchecked-hash .pyc, and its path in the archive."""
    cached = Path(importlib.util.cache_from_source(archive_name))
    with tempfile.TemporaryDirectory(prefix="uffdprobe-pyc-") as tmp:
        target = Path(tmp) / "x.pyc"
        py_compile.compile(
            str(source),
            cfile=str(target),
            dfile=archive_name,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return cached.as_posix(), target.read_bytes()


def _add(bundle: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # the same inputs give the same archive
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    bundle.writestr(info, data)


def archive_bytes(cffi_wheels: Sequence[Path] = ()) -> bytes:
    """The whole payload: shebang, then the zip with __main__.py, site/ and its bytecode."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as bundle:
        _add(bundle, "__main__.py", (Path(__file__).parent / "payload_main.py").read_bytes(), 0o644)
        # the version the reports name (importlib.metadata reads it from a dist-info folder)
        metadata = f"Metadata-Version: 2.1\nName: uffdprobe\nVersion: {uffdprobe.__version__}\n"
        _add(bundle, f"site/uffdprobe-{uffdprobe.__version__}.dist-info/METADATA", metadata.encode(), 0o644)
        for name, path in sorted(contents(cffi_wheels).items()):
            mode = stat.S_IMODE(path.stat().st_mode) | 0o444
            _add(bundle, name, path.read_bytes(), mode)
            if name.endswith(".py"):
                _add(bundle, *_bytecode(path, name), 0o644)
        for wheel in cffi_wheels:
            for name, data, mode in _wheel_backends(wheel):
                if name not in bundle.namelist():
                    _add(bundle, name, data, mode)
    return buffer.getvalue()


def build(out: Path, cffi_wheels: Iterable[Path] = ()) -> int:
    """Write the payload to `out` whole or not at all (executable, like a script); returns its size."""
    from uffdprobe.osutil.files import write_atomic

    if out.is_dir():
        raise UsageError(f"payload: {out} is a folder; give the file to write, e.g. {out / 'uffdprobe.pyz'}")
    data = archive_bytes(list(cffi_wheels))
    write_atomic(out, data)
    os.chmod(out, 0o755)
    return len(data)
