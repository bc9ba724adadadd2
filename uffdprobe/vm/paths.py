"""Where the VM runner keeps its caches and per-run directories."""

import os
import time
from pathlib import Path


def cache_root() -> Path:
    """The user cache dir of uffdprobe ($XDG_CACHE_HOME/uffdprobe, else ~/.cache/uffdprobe)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "uffdprobe"


def new_run_dir(parent: Path = None) -> Path:
    """Create a fresh, uniquely named directory for one boot."""
    parent = Path(parent) if parent else cache_root() / "runs"
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = parent / f"{stamp}-{os.getpid()}-{n}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run directory under {parent}")
