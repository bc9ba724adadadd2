"""The kernel × scenario matrix: cells built from Results, flaky detection, marks against expectations."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .expect import matches
from uffdprobe.verdicts import Result, Verdict, plain

#: Recipes declare one verdict per scenario; like expect.check, it holds for this memory kind only.
EXPECT_MEMORY = "anon-4k"
#: Cell marks. The first three are "unexpected": they make `uffdprobe matrix` exit nonzero.
REGRESSION, UNEXPECTED, FIXED, EXPECTED, UNDECLARED = "REGRESSION", "UNEXPECTED", "FIXED", "expected", ""
_PRIORITY = (REGRESSION, UNEXPECTED, FIXED, EXPECTED, UNDECLARED)
_NO_ANSWER = {Verdict.ERROR, Verdict.BUILD_FAIL, Verdict.BOOT_FAIL, Verdict.PANIC, Verdict.VM_TIMEOUT}
_KERNEL_BROKE = {Verdict.HANG, Verdict.LEAK, Verdict.WP_LOST, Verdict.PANIC, Verdict.BOOT_FAIL,
                 Verdict.VM_TIMEOUT}
_BAD = {"HANG", "LEAK", "WP_LOST"}


def judge(expected: Optional[str], verdict: Verdict) -> str:
    """One verdict against a declaration: expected, REGRESSION (worse), FIXED (better) or UNEXPECTED."""
    if expected is None:
        return UNEXPECTED if verdict in _NO_ANSWER else UNDECLARED
    no_answer = verdict in _NO_ANSWER and expected not in (verdict.value, "ANY")  # a panic is no "NOT_LEAK"
    if matches(expected, verdict) and not no_answer:
        return EXPECTED
    if verdict in _KERNEL_BROKE and expected not in _BAD:
        return REGRESSION
    if verdict is Verdict.PASS and expected in _BAD:
        return FIXED
    return UNEXPECTED


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
    def mark(self) -> str:
        """The worst judgement over the runs (REGRESSION before UNEXPECTED before FIXED)."""
        marks = {judge(self.expected, r.verdict) for r in self.results}
        return min(marks, key=_PRIORITY.index)

    @property
    def unexpected(self) -> bool:
        return self.mark in (REGRESSION, UNEXPECTED, FIXED)

    def to_dict(self) -> dict:
        return {"kernel": self.kernel, "scenario": self.scenario, "memory": self.memory,
                "verdict": self.verdict, "label": self.label, "counts": dict(self.counts),
                "runs": len(self.results), "expected": self.expected, "mark": self.mark or None,
                "unexpected": self.unexpected, "results": [r.to_dict() for r in self.results]}


@dataclass
class KernelRun:
    """Everything one kernel produced: its label, identity, boot facts and every Result."""
    label: str
    results: List[Result]
    identity: Dict[str, Any] = field(default_factory=dict)
    boot: Dict[str, Any] = field(default_factory=dict)
    expect: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"label": self.label, "identity": self.identity, "boot": self.boot, "expect": self.expect}


@dataclass
class Matrix:
    """Kernels in the order given; rows are (scenario, memory) in the order they first ran."""
    kernels: List[KernelRun]

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
        expected = kernel.expect.get(scenario) if memory == EXPECT_MEMORY else None
        return Cell(kernel.label, scenario, memory, runs, expected)

    def cells(self) -> List[Cell]:
        """Every present cell, kernel by kernel, in row order."""
        out = []
        for k in self.kernels:
            out += [c for c in (self.cell(k, s, m) for s, m in self.rows) if c is not None]
        return out

    def unexpected(self) -> List[Cell]:
        return [c for c in self.cells() if c.unexpected]

    def to_dict(self) -> dict:
        return {"kernels": [plain(k.to_dict()) for k in self.kernels],
                "rows": [{"scenario": s, "memory": m} for s, m in self.rows],
                "cells": [c.to_dict() for c in self.cells()]}

    @classmethod
    def from_dict(cls, d: dict) -> "Matrix":
        """Rebuild a Matrix from to_dict() output (the --json file)."""
        by_kernel: Dict[str, List[Result]] = {}
        for c in d["cells"]:
            by_kernel.setdefault(c["kernel"], []).extend(Result.from_dict(r) for r in c["results"])
        return cls([KernelRun(k["label"], by_kernel.get(k["label"], []), k.get("identity", {}),
                              k.get("boot", {}), k.get("expect", {})) for k in d["kernels"]])
