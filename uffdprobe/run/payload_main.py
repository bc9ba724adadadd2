# SPDX-License-Identifier: GPL-2.0-only
"""The `__main__.py` of a lab-board payload (run/payload.py builds it; nothing in the package imports this).

`python3 uffdprobe.pyz ARGS` is `uffdprobe ARGS` on a machine that has only a Python 3.9+ and a libc. Compiled
modules cannot be imported from inside a zip, so the archive's site/ folder (uffdprobe with its compiled
bindings, psutil, cffi's backend) is unpacked into a fresh private folder under $TMPDIR, put first on the module
path (also for the child processes uffdprobe starts, through PYTHONPATH), and removed again on the way out.
Only the standard library is used here.
"""

import importlib.machinery
import os
import runpy
import shutil
import sys
import tempfile
import zipfile

#: Exit.SETUP of uffdprobe/exitcodes.py (this file cannot import the package it unpacks).
SETUP_ERROR = 2


def _unpack(archive: str, into: str) -> str:
    """Extract the archive's site/ under `into`, with the file modes it was built with; returns site/."""
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            if not info.filename.startswith("site/"):
                continue
            path = bundle.extract(info, into)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)
    return os.path.join(into, "site")


def main() -> int:
    """Unpack, run `python -m uffdprobe` with our arguments, clean up; its exit status."""
    if sys.version_info < (3, 9):
        print("uffdprobe payload: needs Python 3.9 or later", file=sys.stderr)
        return SETUP_ERROR
    archive = os.path.dirname(os.path.abspath(__file__))
    try:
        scratch = tempfile.mkdtemp(prefix="uffdprobe-payload-")
    except OSError as exc:
        print(
            f"uffdprobe payload: cannot make a folder to unpack into ({exc}); set TMPDIR to a writable folder",
            file=sys.stderr,
        )
        return SETUP_ERROR
    try:
        try:
            site = _unpack(archive, scratch)
        except (OSError, zipfile.BadZipFile) as exc:
            print(
                f"uffdprobe payload: cannot unpack {archive} into {scratch} ({exc}); check the free space "
                f"of TMPDIR and that the payload was copied whole",
                file=sys.stderr,
            )
            return SETUP_ERROR
        sys.path.insert(0, site)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
        try:
            import _cffi_backend  # noqa: F401  (carried for the builder's Python, else the system's)
        except ImportError as exc:
            carried = sorted(n.split(".")[1] for n in os.listdir(site) if n.startswith("_cffi_backend."))
            ours = [os.path.join(site, "_cffi_backend" + suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES]
            if any(os.path.exists(path) for path in ours):  # there, but the loader refused it
                print(
                    f"uffdprobe payload: cannot load the compiled modules unpacked in {scratch} ({exc}); if "
                    f"that filesystem is mounted noexec, set TMPDIR to a folder on one that is not",
                    file=sys.stderr,
                )
                return SETUP_ERROR
            print(
                f"uffdprobe payload: no cffi backend for this Python {sys.version_info[0]}.{sys.version_info[1]} "
                f"(the payload carries {', '.join(carried) or 'none'}); rebuild it with this Python, or add "
                f"this Python's cffi wheel with `uffdprobe payload OUT --cffi-wheel WHEEL`",
                file=sys.stderr,
            )
            return SETUP_ERROR
        sys.argv[0] = "uffdprobe"
        try:
            runpy.run_module("uffdprobe", run_name="__main__", alter_sys=False)
        except SystemExit as done:
            code = done.code
            if code is None or isinstance(code, int):
                return code or 0
            print(code, file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
