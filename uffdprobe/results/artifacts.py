# SPDX-License-Identifier: GPL-2.0-only
"""The files a results folder holds (console logs, run logs, selftest output, kernel.json, build logs),
named in a report by their path relative to the report's own folder: a CI job archives the results
folder with its reports in it, and every link still resolves wherever the archive is unpacked."""

import copy
import os
from pathlib import Path
from typing import Any, Dict

from .matrix import KernelRun, Matrix


def relative_paths(value: Any, root: Path, base: Path) -> Any:
    """`value` (evidence, boot facts: dicts, lists, strings) with every absolute path to something inside
    `root` rewritten relative to the folder `base`; everything else as it was."""
    if isinstance(value, dict):
        return {key: relative_paths(item, root, base) for key, item in value.items()}
    if isinstance(value, list):
        return [relative_paths(item, root, base) for item in value]
    if isinstance(value, str) and value.startswith("/"):
        for top in {str(root.absolute()), str(root.resolve())}:
            if value == top or value.startswith(top + os.sep):
                return os.path.relpath(value, base)
    return value


def relocated_run(k: KernelRun, root: Path, report: Path) -> KernelRun:
    """A copy of a kernel's run for a report written to `report`: its folder's files named relative to it."""
    root, base = Path(root), Path(report).absolute().parent
    out = copy.copy(k)
    out.boot = relative_paths(k.boot, root, base)
    out.identity = relative_paths(_kept_build_files(k, root), root, base)
    out.results = []
    for r in k.results:
        moved = copy.copy(r)
        moved.evidence = relative_paths(r.evidence, root, base)
        out.results.append(moved)
    return out


def _kept_build_files(k: KernelRun, root: Path) -> Dict[str, Any]:
    """The identity with its build log and .config named as the copies in the kernel's results folder (the
    folder of its console log), where those were kept, instead of the kernel cache's."""
    identity = dict(k.identity)
    console = k.boot.get("console_log")
    folder = Path(str(console)).parent if console else None
    tops = (root.absolute(), root.resolve())
    if folder is None or not any(folder == top or top in folder.parents for top in tops):
        return identity  # no console log inside the results folder: nothing was kept beside it
    for key, name in (("build_log", "build.log"), ("config_file", "config")):
        if identity.get(key) and (folder / name).is_file():
            identity[key] = str(folder / name)
    return identity


def relocated(m: Matrix, root: Path, report: Path) -> Matrix:
    """A copy of the matrix for a report written to `report`, paths inside `root` relative to its folder."""
    return Matrix([relocated_run(k, root, report) for k in m.kernels], m.complete)
