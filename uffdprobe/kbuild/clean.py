# SPDX-License-Identifier: GPL-2.0-only
"""`kernel clean`: remove built kernels from a uffdprobe kernel cache (never from a folder without its
marker), leaving every kernel a running build, boot or matrix holds; with everything, also the unpacked
sources and workspaces, only while no build or unpack runs."""

import os
import sys
from pathlib import Path

from . import cache
from .errors import BadInput, SetupError
from uffdprobe.osutil.files import usable_dir


def clean(cache_dir=None, everything: bool = False) -> list:
    """Remove built kernels (and, with everything, unpacked sources and workspaces); returns what went.

    Half-done removals of dead processes are finished first. Sources, workspaces and temporary trees
    go only under the exclusive in-use lock: while a build or unpack runs they are left alone (a
    SetupError says so, after the complete kernels and aliases are removed)."""
    root = Path(cache_dir) if cache_dir else cache.default_root()
    if not root.is_dir():
        return []
    usable_dir(
        root,
        "the kernel cache",
        "pass a writable --cache-dir" if cache_dir else "point XDG_CACHE_HOME at a writable folder",
    )
    if not cache.is_marked(root):
        raise BadInput(
            f"{root} is not a uffdprobe kernel cache (no {cache.MARKER} written by uffdprobe): "
            "removed nothing; name the folder `kernel build` uses"
        )
    removed = cache.finish_removals(root)
    fd = cache.exclusive_use(root)
    try:
        if fd is None:
            removed += _remove_complete_entries(root)
            if everything:
                raise SetupError(
                    "a build or unpack is running in this cache: removed complete kernels only, "
                    "left sources and workspaces alone; run `kernel clean --all` again once it is done"
                )
            return removed
        removed += _remove_complete_entries(root)
        parts = ["work", "sources", "source-hashes.json", "kselftests"] if everything else []
        for part in parts:
            path = root / part
            if os.path.lexists(path):
                cache.remove_tree(path)
                removed.append(path)
        for leftover in root.glob(".stage-*"):  # staging dirs of killed builds
            cache.remove_tree(leftover)
            removed.append(leftover)
        return removed
    finally:
        if fd is not None:
            os.close(fd)


def _remove_complete_entries(root: Path) -> list:
    """Installed kernels and aliases, one by one, leaving an install in progress (.tmp-*) and every entry
    a running build, boot or matrix holds (cache.hold_entry) alone."""
    removed, kept = [], []
    for path in sorted((root / "entries").glob("[!.]*")) if (root / "entries").is_dir() else []:
        fd = cache.try_lock(root, f"entry-{path.name}")
        if fd is None:
            kept.append(path.name[:12])
            continue
        try:
            cache.remove_tree(path)
        finally:
            os.close(fd)
        removed.append(path)
    installed = {p.name for p in (root / "entries").glob("[!.]*")} if (root / "entries").is_dir() else set()
    for path in sorted((root / "aliases").glob("[!.]*")) if (root / "aliases").is_dir() else []:
        if cache.read_alias(root, path.stem) not in installed:  # an alias of a kept kernel stays
            cache.remove_tree(path)
            removed.append(path)
    if kept:
        print(
            f"kbuild: kept {len(kept)} kernel(s) in use by a running build, boot or matrix: {', '.join(kept)}",
            file=sys.stderr,
        )
    return removed
