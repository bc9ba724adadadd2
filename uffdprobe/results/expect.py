# SPDX-License-Identifier: GPL-2.0-only
"""The one verdict rule: declared expectations (per kernel, scenario and memory kind) against verdicts.

Anything but PASS or SKIP fails unless it is declared for that kernel, scenario and memory kind; a
declared bad verdict that happens is an expected failure; one that no longer happens is FIXED and fails.
A cell of several runs that disagree is FLAKY unless the declaration accepts every run: a declared
bad verdict that still happens in some runs marks it 'FLAKY HANG' (failing; never FIXED while it still
happens). 'HANG>=K/N' declares a racy defect: at least K HANG runs in N, the other runs may PASS.
Every consumer (run, matrix, check, JUnit, KTAP, HTML, KCIDB, the pytest plugin) asks `judge`, `cell_mark`
and `failing`, and gets a typed mark (`Mark`, or `Flaky`) whose str() is the text its output writes.
"""

import enum
import re
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from uffdprobe.scenarios.memkinds import ALL_KINDS, NO_MEMORY
from uffdprobe.verdicts import KERNEL_PROBLEMS, Result, Verdict


class Mark(str, enum.Enum):
    """A judgement against a declaration; its value is the text every output writes. REGRESSION,
    UNEXPECTED and FIXED fail (exit 7 for a matrix, a JUnit failure, a failed test)."""

    REGRESSION = "REGRESSION"  #: worse than declared
    UNEXPECTED = "UNEXPECTED"  #: a bad verdict nothing declares, or neither better nor worse
    FIXED = "FIXED"  #: a declared bad verdict that no longer happens
    EXPECTED = "expected"  #: as declared
    UNDECLARED = ""  #: PASS or SKIP, nothing declared

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Flaky:
    """The mark of a cell whose declared bad verdict happens in some of its runs only: 'FLAKY HANG'. It
    fails (the runs disagree), but it is never FIXED: the declaration is still needed."""

    verdict: Verdict

    def __str__(self) -> str:
        return f"FLAKY {self.verdict.value}"


#: What `cell_mark` answers for a cell of one or more runs (`judge`, for one run, answers a Mark).
CellMark = Union[Mark, Flaky]
REGRESSION, UNEXPECTED, FIXED, EXPECTED, UNDECLARED = (
    Mark.REGRESSION,
    Mark.UNEXPECTED,
    Mark.FIXED,
    Mark.EXPECTED,
    Mark.UNDECLARED,
)
PRIORITY = (REGRESSION, UNEXPECTED, FIXED, EXPECTED, UNDECLARED)
FAILING = (REGRESSION, UNEXPECTED, FIXED)
#: What a declaration may say: a verdict, NOT_HANG/NOT_LEAK (anything but that, never ERROR) or ANY. PANIC
#: declares that the guest panics while this row runs (the row that was running when it did, run/guest.py).
VERDICTS = {"PASS", "SKIP", "ERROR", "PANIC", "NOT_HANG", "NOT_LEAK", "NOT_FAIL", "ANY"} | KERNEL_PROBLEMS
#: A selftest's cases not declared one by one: 'PROGRAM: *' (e.g. "cow: *" = "NOT_FAIL").
EVERY_CASE = "*"
#: A declaration key is SCENARIO (every memory kind) or SCENARIO/MEMORY (that kind, taking precedence).
SEPARATOR = "/"
_GOOD = {Verdict.PASS, Verdict.SKIP}
_NO_ANSWER = {Verdict.ERROR, Verdict.BUILD_FAIL, Verdict.BOOT_FAIL, Verdict.PANIC, Verdict.VM_TIMEOUT}
_KERNEL_BROKE = {Verdict(v) for v in KERNEL_PROBLEMS} | {Verdict.PANIC, Verdict.BOOT_FAIL, Verdict.VM_TIMEOUT}
#: What a declaration may name as the kernel's "no": a kernel problem, or PANIC (the guest died while that
#: row ran; run/guest.py gives the row that was running the panic, the rows after it say they never ran).
BAD = KERNEL_PROBLEMS | {"PANIC"}
_AT_LEAST = re.compile(r"^([A-Z_]+)>=(\d+)/(\d+)$")
SYNTAX = "VERDICT, or BAD_VERDICT>=K/N for a racy one (at least K runs in N, e.g. HANG>=1/20)"


class Declaration(NamedTuple):
    """A declaration's parts: the verdict, and for 'V>=K/N' the least number of runs K in N that show it."""

    verdict: str
    at_least: int = 0
    of_runs: int = 0


def parse(text: str) -> Declaration:
    """'HANG' or 'HANG>=1/20' as a Declaration; ValueError (saying why) for anything else: an unknown
    verdict, K/N with K < 1 or K > N, or an at-least form of a verdict that is not a kernel problem."""
    m = _AT_LEAST.match(text) if isinstance(text, str) else None
    if m is None:
        if isinstance(text, str) and text in VERDICTS:
            return Declaration(text)
        raise ValueError(f"{text!r} is not a verdict; write {SYNTAX} with VERDICT one of {', '.join(sorted(VERDICTS))}")
    verdict, k, n = m.group(1), int(m.group(2)), int(m.group(3))
    if verdict not in KERNEL_PROBLEMS:
        raise ValueError(
            f"{text!r}: 'at least K in N' is for a kernel problem ({', '.join(sorted(KERNEL_PROBLEMS))}), not {verdict}"
        )
    if not 1 <= k <= n:
        raise ValueError(f"{text!r}: K in {verdict}>=K/N must be from 1 to N")
    return Declaration(verdict, k, n)


def declares_bad(expected: Optional[str]) -> bool:
    """True when `expected` declares a kernel problem or a panic (HANG, HANG>=1/20, PANIC)."""
    return expected is not None and _verdict_of(expected) in BAD


def _verdict_of(expected: str) -> str:
    try:
        return parse(expected).verdict
    except ValueError:
        return expected


def split_key(key: str) -> Tuple[str, Optional[str]]:
    """A declaration key as (scenario, memory or None). A selftest case's name holds ': ' and may hold '/'
    ("cow: R/O longterm GUP pin ... with base page"): only a final '/-' (or '/KIND', refused for it) splits."""
    if ": " in key:
        head, slash, tail = key.rpartition(SEPARATOR)
        return (head, tail) if slash and tail in ALL_KINDS + (NO_MEMORY,) else (key, None)
    scenario, slash, memory = key.partition(SEPARATOR)
    return scenario, memory if slash else None


def declared(expect: Dict[str, str], scenario: str, memory: str) -> Optional[str]:
    """What `expect` declares for scenario on memory: 'SCENARIO/MEMORY' first, then 'SCENARIO', then for a
    selftest case ('PROGRAM: CASE') 'PROGRAM: *', else None."""
    found = expect.get(f"{scenario}{SEPARATOR}{memory}", expect.get(scenario))
    if found is None and ": " in scenario:
        found = expect.get(f"{scenario.split(': ', 1)[0]}: {EVERY_CASE}")
    return found


def matches(expected: str, verdict: Verdict) -> bool:
    """PASS/HANG/... must be equal; NOT_HANG, NOT_LEAK and NOT_FAIL mean anything but that (and ERROR); ANY
    takes all."""
    if expected == "ANY":
        return True
    if expected.startswith("NOT_"):
        return verdict.value != expected[4:] and verdict is not Verdict.ERROR
    return verdict.value == expected


def judge(expected: Optional[str], verdict: Verdict) -> Mark:
    """One verdict against a declaration (None: nothing declared): expected, UNDECLARED (a PASS or SKIP
    nobody declared), REGRESSION (worse), FIXED (better) or UNEXPECTED (anything else, undeclared bad too).
    Under 'V>=K/N' one PASS run is expected (a racy trigger may miss); `cell_mark` counts the runs."""
    if expected is None:
        return UNDECLARED if verdict in _GOOD else UNEXPECTED
    declaration = parse(expected)
    if declaration.at_least:
        expected = declaration.verdict
        if verdict is Verdict.PASS:
            return EXPECTED
    no_answer = verdict in _NO_ANSWER and expected not in (verdict.value, "ANY")  # a panic is no "NOT_LEAK"
    if matches(expected, verdict) and not no_answer:
        return EXPECTED
    if verdict in _KERNEL_BROKE and expected not in BAD:
        return REGRESSION
    if verdict is Verdict.PASS and expected in BAD:
        return FIXED
    return UNEXPECTED


def worst(expected: Optional[str], verdicts: List[Verdict]) -> Mark:
    """The worst judgement over several runs of one cell (REGRESSION before UNEXPECTED before FIXED)."""
    return min({judge(expected, v) for v in verdicts}, key=PRIORITY.index)


def cell_mark(expected: Optional[str], verdicts: List[Verdict]) -> CellMark:
    """The mark of a cell from all its runs. REGRESSION and UNEXPECTED as the worst run says. Under
    'V>=K/N': expected with K or more V runs, or with fewer than N runs in all (too few to show it gone);
    FIXED with N or more runs and no V; 'FLAKY V' with some V but fewer than K. Under a plain bad verdict
    V: a cell whose runs show V only sometimes is 'FLAKY V', not FIXED (the declaration is still needed)."""
    mark = worst(expected, verdicts)
    if expected is None or mark in (REGRESSION, UNEXPECTED):
        return mark
    declaration = parse(expected)
    hits = sum(v.value == declaration.verdict for v in verdicts)
    if declaration.at_least:
        if hits >= declaration.at_least or len(verdicts) < declaration.of_runs:
            return mark
        return Flaky(Verdict(declaration.verdict)) if hits else FIXED
    if mark is FIXED and hits:
        return Flaky(Verdict(declaration.verdict))
    return mark


def failing(mark: CellMark) -> bool:
    """True for the marks that fail a run: REGRESSION, UNEXPECTED, FIXED and 'FLAKY V'."""
    return isinstance(mark, Flaky) or mark in FAILING


def expected_failure(expected: Optional[str], mark: CellMark, verdicts: Sequence[Verdict] = ()) -> bool:
    """A declared bad verdict that happened: an xfail, exit 0. Given the runs' verdicts, only when one of
    them is a kernel problem (the PASS runs of a 'HANG>=K/N' cell are as declared, but no xfail)."""
    return mark is EXPECTED and declares_bad(expected) and (not verdicts or any(v.value in BAD for v in verdicts))


def check(expect: Dict[str, str], results: List[Result], memory: Optional[str] = None) -> List[str]:
    """One line per (scenario, memory) whose runs the rule fails (only `memory` kinds when given), its
    runs counted when there are several; [] when all hold."""
    groups: Dict[Tuple[str, str], List[Result]] = {}
    for r in results:
        if not memory or r.memory == memory:
            groups.setdefault((r.scenario, r.memory), []).append(r)
    problems = []
    for (scenario, kind), runs in groups.items():
        want = declared(expect, scenario, kind)
        mark = cell_mark(want, [r.verdict for r in runs])
        if not failing(mark):
            continue
        worst_run = next((r for r in runs if failing(judge(want, r.verdict))), runs[0])
        got = runs[0].verdict.value if len(runs) == 1 else ", ".join(f"{v} {n}/{len(runs)}" for v, n in _tally(runs))
        problems.append(
            f"{mark}: {scenario}[{kind}]: {'expected ' + want if want else 'nothing declared'}"
            f", got {got}: {worst_run.reason}"
        )
    return problems


def _tally(runs: List[Result]) -> List[Tuple[str, int]]:
    counts: Dict[str, int] = {}
    for r in runs:
        counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])
