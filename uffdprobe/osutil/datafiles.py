# SPDX-License-Identifier: GPL-2.0-only
"""Where the files uffdprobe reads at run time live: recipes, fragments and patch series (vm-images/),
and the C sources it compiles at run time (native/).

In a source checkout (also an editable install) they are the checkout's own top-level vm-images/ and
native/, the one source of truth. An installed wheel or sdist carries a copy of them as package data in
uffdprobe/data/, made at build time by setup.py. Nothing else in the package computes these paths.
"""

import functools
from pathlib import Path
from typing import Optional

#: The folder holding the uffdprobe package: a checkout's root, or site-packages once installed.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
#: Package data of an installed uffdprobe (setup.py's build_py copies vm-images/ and native/ here).
SHIPPED = Path(__file__).resolve().parents[1] / "data"


@functools.lru_cache(maxsize=None)
def checkout() -> Optional[Path]:
    """The source checkout this uffdprobe runs from, None for an installed wheel or sdist."""
    root = PACKAGE_PARENT
    if (root / "vm-images" / "recipes").is_dir() and (root / "native" / "build_native.py").is_file():
        return root
    return None


def _base() -> Path:
    root = checkout()
    return root if root is not None else SHIPPED


def vm_images() -> Path:
    """The vm-images tree: recipes/, fragments/, patches/."""
    return _base() / "vm-images"


def native() -> Path:
    """bench's C handler: bench_missing.c, and in an installed package bench_missing built at install time."""
    return _base() / "native"
