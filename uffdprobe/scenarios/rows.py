# SPDX-License-Identifier: GPL-2.0-only
"""Report rows that are programs, not scenarios: a `--exec` program's row (its label), the programs
uffdprobe ships (uffd.programs) and the kernel log's own row (a splat outside every workload,
supervise.splat), so that `--expect` and a recipe's [expect] can name them."""

from typing import Set

from uffdprobe.uffd.programs import PROGRAMS
from .memkinds import NO_MEMORY  # noqa: F401 (a program's row runs on no memory kind of ours)

_DECLARED: Set[str] = set()
#: The row of a kernel splat logged outside every workload (during the boot, between two workloads).
KERNEL_LOG_ROW = "kernel-log"


def declare(name: str) -> None:
    """This run's `--exec` row name, known from now on to --expect."""
    _DECLARED.add(name)


def is_program_row(name: str) -> bool:
    return name in PROGRAMS or name in _DECLARED or name == KERNEL_LOG_ROW
