# SPDX-License-Identifier: GPL-2.0-only
"""The matrix as a terminal table: kernels across, scenario(memory) down, a verdict and mark per cell."""

import os
from typing import Iterable, List, Optional, TextIO

from uffdprobe.scenarios.memkinds import NO_MEMORY
from .matrix import EXPECTED, Cell, Matrix

_COLOUR = {
    "PASS": "32",
    "SKIP": "2",
    "HANG": "1;31",
    "LEAK": "1;35",
    "WP_LOST": "1;33",
    "FAIL": "31",
    "STUCK": "1;33",
    "WARN": "1;33",
    "OOPS": "1;31",
    "REFUSED": "35",
    "FLAKY": "33",
    "ERROR": "7;31",
    "BUILD_FAIL": "7;31",
    "BOOT_FAIL": "7;31",
    "PANIC": "7;31",
    "VM_TIMEOUT": "7;31",
}
LEGEND = (
    "ok: as declared (recipe or --expect); REGRESSION: worse than declared; FIXED: better than declared; "
    "FLAKY HANG (any bad verdict): declared, but only some runs showed it; "
    "UNEXPECTED: a bad verdict nothing declares, or neither (no mark: PASS/SKIP, nothing declared)"
)


def colour_wanted(stream: TextIO) -> bool:
    """Colours for a table written to `stream`: on a terminal, unless NO_COLOR is set to anything but ""
    (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def cell_text(c: Cell) -> str:
    mark = "ok" if c.mark is EXPECTED else str(c.mark)  # a mark's own text, but a short word for "as declared"
    return f"{c.label} {mark}" if mark else c.label


def render(m: Matrix, colour: bool = False) -> str:
    """The table, one line per row; with `colour`, ANSI colours per verdict (padding stays aligned)."""
    rows = m.rows
    names = [s if mem == NO_MEMORY else f"{s}({mem})" for s, mem in rows]  # a selftest row has no memory kind
    first = max([len("scenario(memory)")] + [len(n) for n in names])
    grid: List[List[Optional[Cell]]] = [[m.cell(k, s, mem) for k in m.kernels] for s, mem in rows]
    widths = [
        max([len(k.label)] + [len(cell_text(c)) for c in (row[i] for row in grid) if c])
        for i, k in enumerate(m.kernels)
    ]
    lines = ["  ".join([f"{'scenario(memory)':<{first}}"] + [f"{k.label:<{w}}" for k, w in zip(m.kernels, widths)])]
    lines.append("  ".join(["-" * first] + ["-" * w for w in widths]))
    for name, row in zip(names, grid):
        parts = [f"{name:<{first}}"]
        for c, w in zip(row, widths):
            text = cell_text(c) if c else "-"
            padded = f"{text:<{w}}"
            if colour and c:
                padded = f"\033[{_COLOUR.get(c.verdict, '0')}m{text}\033[0m" + " " * (w - len(text))
            parts.append(padded)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def unexpected_lines(m: Matrix, cells: Optional[Iterable[Cell]] = None) -> List[str]:
    """One line per unexpected cell (of `cells` when given, else of the whole matrix): where, what was
    declared, what happened, why."""
    out = []
    for c in m.unexpected() if cells is None else cells:
        declared = f"expected {c.expected}" if c.expected else "nothing declared"
        out.append(f"{c.mark}: {c.kernel} {c.scenario}({c.memory}): {declared}, got {c.label}: {c.results[0].reason}")
    return out
