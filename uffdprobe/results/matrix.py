# SPDX-License-Identifier: GPL-2.0-only
"""The kernel × scenario matrix: cells built from Results, flaky detection, marks against expectations."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .expect import (
    EXPECTED,
    FIXED,
    REGRESSION,
    UNDECLARED,
    UNEXPECTED,
    CellMark,
    Flaky,
    Mark,
    cell_mark,
    declared,
    failing,
    judge,
)
from uffdprobe.verdicts import Result, plain

#: The marks (REGRESSION, UNEXPECTED, FIXED fail) and the rule itself live in expect.py; re-exported here.
__all__ = [
    "Mark",
    "Flaky",
    "CellMark",
    "EXPECTED",
    "FIXED",
    "REGRESSION",
    "UNDECLARED",
    "UNEXPECTED",
    "judge",
    "Cell",
    "KernelRun",
    "Matrix",
]


@dataclass
class Cell:
    """One kernel × scenario × memory kind: every run's Result and the declared expectation."""

    kernel: str
    scenario: str
    memory: str
    results: List[Result]
    expected: Optional[str] = None

    @property
    def counts(self) -> List[Tuple[str, int]]:
        """(verdict, runs) pairs, most frequent first."""
        tally: Dict[str, int] = {}
        for r in self.results:
            tally[r.verdict.value] = tally.get(r.verdict.value, 0) + 1
        return sorted(tally.items(), key=lambda kv: -kv[1])

    @property
    def flaky(self) -> bool:
        return len(self.counts) > 1

    @property
    def verdict(self) -> str:
        """The one verdict every run agreed on, or FLAKY."""
        return "FLAKY" if self.flaky else self.counts[0][0]

    @property
    def label(self) -> str:
        """What a table shows: 'PASS', or 'FLAKY: HANG 2/3, PASS 1/3'."""
        if not self.flaky:
            return self.verdict
        n = len(self.results)
        return "FLAKY: " + ", ".join(f"{v} {c}/{n}" for v, c in self.counts)

    @property
    def mark(self) -> CellMark:
        """The judgement over every run (expect.cell_mark): REGRESSION, UNEXPECTED, 'FLAKY HANG', FIXED,
        expected or undeclared."""
        return cell_mark(self.expected, [r.verdict for r in self.results])

    @property
    def unexpected(self) -> bool:
        return failing(self.mark)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kernel": self.kernel,
            "scenario": self.scenario,
            "memory": self.memory,
            "verdict": self.verdict,
            "label": self.label,
            "counts": dict(self.counts),
            "runs": len(self.results),
            "expected": self.expected,
            "mark": str(self.mark) or None,
            "unexpected": self.unexpected,
            "results": [r.to_dict() for r in self.results],
        }


@dataclass
class KernelRun:
    """Everything one kernel produced: its label, identity, boot facts, every Result; `complete` is False
    when the run was interrupted before every verdict arrived."""

    label: str
    results: List[Result]
    identity: Dict[str, Any] = field(default_factory=dict)
    boot: Dict[str, Any] = field(default_factory=dict)
    expect: Dict[str, str] = field(default_factory=dict)
    complete: bool = True

    def to_dict(self) -> Dict[str, Any]:
        return {
            "label": self.label,
            "identity": self.identity,
            "boot": self.boot,
            "expect": self.expect,
            "complete": self.complete,
        }


@dataclass
class Matrix:
    """Kernels in the order given; rows are (scenario, memory) in the order they first ran."""

    kernels: List[KernelRun]
    complete: bool = True

    @property
    def rows(self) -> List[Tuple[str, str]]:
        seen: Dict[Tuple[str, str], None] = {}
        for k in self.kernels:
            for r in k.results:
                seen.setdefault((r.scenario, r.memory), None)
        return list(seen)

    def cell(self, kernel: KernelRun, scenario: str, memory: str) -> Optional[Cell]:
        runs = [r for r in kernel.results if r.scenario == scenario and r.memory == memory]
        if not runs:
            return None
        return Cell(kernel.label, scenario, memory, runs, declared(kernel.expect, scenario, memory))

    def cells(self) -> List[Cell]:
        """Every present cell, kernel by kernel, in row order."""
        out = []
        for k in self.kernels:
            out += [c for c in (self.cell(k, s, m) for s, m in self.rows) if c is not None]
        return out

    def unexpected(self) -> List[Cell]:
        return [c for c in self.cells() if c.unexpected]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "complete": self.complete and all(k.complete for k in self.kernels),
            "kernels": [plain(k.to_dict()) for k in self.kernels],
            "rows": [{"scenario": s, "memory": m} for s, m in self.rows],
            "cells": [c.to_dict() for c in self.cells()],
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Matrix":
        """Rebuild a Matrix from to_dict() output (the --json file)."""
        by_kernel: Dict[str, List[Result]] = {}
        for c in d["cells"]:
            by_kernel.setdefault(c["kernel"], []).extend(Result.from_dict(r) for r in c["results"])
        return cls(
            [
                KernelRun(
                    k["label"],
                    by_kernel.get(k["label"], []),
                    k.get("identity", {}),
                    k.get("boot", {}),
                    k.get("expect", {}),
                    k.get("complete", True),
                )
                for k in d["kernels"]
            ],
            d.get("complete", True),
        )
