# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe check`'s answers: per catalogue defect and kernel, PRESENT / ABSENT / CANNOT ASK, from a matrix.

A defect is asked by one or more scenarios (its cells on that kernel). Any cell with a kernel-problem
verdict (verdicts.KERNEL_PROBLEMS, also one run of a FLAKY cell) makes it PRESENT, and so does a PANIC of
the run that was running when the guest died when the kernel's report has one of the functions the
defect `crashes_in` as a frame (the oops it began with: run/guest.py keeps it); otherwise a cell without
an answer (ERROR, a boot or VM failure) makes it NO ANSWER; otherwise a PASS makes it ABSENT; a defect whose
cells were all SKIP is CANNOT ASK, with the probed reasons. Whether a PRESENT defect is accepted follows the
one verdict rule: its cells' declarations (a recipe's [expect], --expect), nothing else.
"""

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, TextIO

from uffdprobe.scenarios.catalogue import by_defect, describe_fix
from uffdprobe.scenarios.defect import Defect
from uffdprobe.scenarios.registry import SCENARIOS
from uffdprobe.verdicts import KERNEL_PROBLEMS, Result, Verdict, plain
from .expect import EXPECTED, judge
from .matrix import Cell, Matrix

PRESENT, ABSENT, CANNOT_ASK, NO_ANSWER = "PRESENT", "ABSENT", "CANNOT ASK", "NO ANSWER"
ANSWERS = (PRESENT, ABSENT, CANNOT_ASK, NO_ANSWER)


@dataclass
class Answer:
    """One defect on one kernel: the answer, why (the cell that decided it), and its cells."""

    defect: Defect
    kernel: str
    answer: str
    why: str
    cells: List[Cell]

    @property
    def accepted(self) -> bool:
        """A PRESENT defect its cells' declarations accept (never true for an undeclared one)."""
        return self.answer == PRESENT and all(
            judge(c.expected, r.verdict) is EXPECTED for c in self.cells for r in c.results if _shows(self.defect, r)
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "defect": self.defect.id,
            "kernel": self.kernel,
            "answer": self.answer,
            "why": self.why,
            "declared": self.accepted if self.answer == PRESENT else None,
            "fix": describe_fix(self.defect) if self.answer == PRESENT else None,
            "cells": [
                {
                    "scenario": c.scenario,
                    "memory": c.memory,
                    "verdict": c.verdict,
                    "label": c.label,
                    "expected": c.expected,
                    "mark": str(c.mark) or None,
                }
                for c in self.cells
            ],
        }


def _shows(defect: Defect, r: Result) -> bool:
    """Whether one run shows the defect: a kernel problem, or a panic during it in a function it crashes in."""
    if r.verdict.value in KERNEL_PROBLEMS:
        return True
    return r.verdict is Verdict.PANIC and r.evidence.get("running") is True and bool(crash_frame(defect, r))


def crash_frame(defect: Defect, r: Result) -> str:
    """The first line of a run's kernel report (from its first splat, then the panic's) with a frame in a
    function the defect `crashes_in` ('RIP: 0010:move_pages+0x494/0x1021'), or ''. A frame is NAME+0x...:
    move_pages_huge_pmd is not move_pages."""
    if not defect.crashes_in:
        return ""
    frame = re.compile(r"(?<![\w.])(?:%s)\+0x" % "|".join(map(re.escape, defect.crashes_in)))
    report = [*(r.evidence.get("kernel_report") or ()), *(r.evidence.get("panic_lines") or ())]
    found = next((str(line) for line in report if frame.search(str(line))), "")
    return re.sub(r"^\[[\s\d.]*\]\s*", "", found)


def _decided(defect: Defect, kernel: str, cells: List[Cell]) -> Answer:
    present = [c for c in cells if any(_shows(defect, r) for r in c.results)]
    if present:
        c = present[0]
        r = next(r for r in c.results if _shows(defect, r))
        why = r.reason if r.verdict is not Verdict.PANIC else f"{r.reason}, after {crash_frame(defect, r)}"
        return Answer(defect, kernel, PRESENT, f"{c.scenario}({c.memory}) {c.label}: {why}", cells)
    unanswered = [c for c in cells if c.verdict not in ("PASS", "SKIP")]
    if unanswered:
        c = unanswered[0]
        return Answer(defect, kernel, NO_ANSWER, f"{c.scenario}({c.memory}) {c.label}: {c.results[0].reason}", cells)
    passed = [c for c in cells if c.verdict == "PASS"]
    if passed:
        c = passed[0]
        return Answer(
            defect,
            kernel,
            ABSENT,
            f"{len(passed)} of {len(cells)} cell(s) PASS, e.g. {c.scenario}({c.memory}): {c.results[0].reason}",
            cells,
        )
    reasons = sorted({c.results[0].reason for c in cells})
    return Answer(defect, kernel, CANNOT_ASK, "; ".join(reasons) or "no scenario of it ran", cells)


def answers(m: Matrix) -> List[Answer]:
    """Every catalogue defect asked in `m`, kernel by kernel, in table order."""
    asked = {s for s, _ in m.rows}
    out = []
    for defect, scenarios in by_defect(s for s in SCENARIOS.values() if s.name in asked):
        names = {s.name for s in scenarios}
        for k in m.kernels:
            cells = [
                c
                for c in (
                    m.cell(k, s, mem) for s, mem in m.rows if s in names and (not defect.memory or mem in defect.memory)
                )
                if c is not None
            ]
            if cells:
                out.append(_decided(defect, k.label, cells))
    return out


def undeclared_present(found: List[Answer]) -> List[Answer]:
    """The PRESENT answers nothing declares: each a kernel problem (exit 1)."""
    return [a for a in found if a.answer == PRESENT and not a.accepted]


def to_dict(m: Matrix, found: List[Answer]) -> Dict[str, Any]:
    """The check document's body: the defects (metadata), the answers, and the matrix they came from."""
    seen: Dict[str, Defect] = {}
    for a in found:
        seen.setdefault(a.defect.id, a.defect)
    return {
        "defects": [{**plain(d), "fix": describe_fix(d)} for d in seen.values()],
        "answers": [a.to_dict() for a in found],
        "matrix": m.to_dict(),
    }


def render(found: List[Answer], out: TextIO, width: Optional[int] = None) -> None:
    """Per defect: each kernel's answer and why; the fix to backport under every PRESENT one."""
    by_id: Dict[str, List[Answer]] = {}
    for a in found:
        by_id.setdefault(a.defect.id, []).append(a)
    label_w = max([len(a.kernel) for a in found] + [6])
    for rows in by_id.values():
        d = rows[0].defect
        since = " + ".join(c.id for c in d.introduced) or d.first_affected
        print(
            f"{d.id}{' (' + d.cve + ')' if d.cve else ''}: "
            f"{'introduced by ' + since if since else 'long-standing'}, fixed in {d.first_fixed}",
            file=out,
        )
        for a in rows:
            note = "" if a.answer != PRESENT else (" (declared)" if a.accepted else " (NOT DECLARED)")
            why = a.why if width is None else a.why[:width]
            print(f"  {a.kernel:<{label_w}}  {a.answer}{note}: {why}", file=out)
            if a.answer == PRESENT:
                print(f"  {'':<{label_w}}  backport: {describe_fix(d)}", file=out)
