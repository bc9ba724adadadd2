# SPDX-License-Identifier: GPL-2.0-only
"""Where the VM runner keeps its caches and per-run directories."""

import os
import time
from pathlib import Path

from uffdprobe.osutil.files import cache_home


def cache_root() -> Path:
    """The user cache dir of uffdprobe ($XDG_CACHE_HOME/uffdprobe, else ~/.cache/uffdprobe)."""
    return cache_home() / "uffdprobe"


_ISSUED = set()


def new_run_dir(parent: Path = None, create: bool = True) -> Path:
    """A fresh, uniquely named directory for one boot; with create=False only its name (boot() makes it
    once the kernel is found usable, so a refused run leaves nothing behind)."""
    parent = Path(parent) if parent else cache_root() / "runs"
    if create:
        parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = parent / f"{stamp}-{os.getpid()}-{n}"  # the pid keeps other processes' names apart
        if path in _ISSUED:
            continue
        try:
            if create:
                path.mkdir()
            elif path.exists():
                continue
        except FileExistsError:
            continue
        _ISSUED.add(path)
        return path
    raise RuntimeError(f"cannot create a run directory under {parent}")
