"""The one verdict rule: declared expectations (per kernel, scenario and memory kind) against verdicts.

Anything but PASS or SKIP fails unless it is declared for that kernel, scenario and memory kind; a
declared bad verdict that happens is an expected failure; one that no longer happens is FIXED and fails.
Every consumer (run, matrix, JUnit, the pytest plugin) asks `judge` and `failing`, nothing else.
"""
from typing import Dict, List, Optional, Tuple

from uffdprobe.scenarios.memkinds import ALL_KINDS, NO_MEMORY
from uffdprobe.verdicts import KERNEL_PROBLEMS, Result, Verdict

#: Cell marks. The first three fail (exit 7 for a matrix, a JUnit failure, a failed test).
REGRESSION, UNEXPECTED, FIXED, EXPECTED, UNDECLARED = "REGRESSION", "UNEXPECTED", "FIXED", "expected", ""
PRIORITY = (REGRESSION, UNEXPECTED, FIXED, EXPECTED, UNDECLARED)
FAILING = (REGRESSION, UNEXPECTED, FIXED)
#: What a declaration may say: a verdict, NOT_HANG/NOT_LEAK (anything but that, never ERROR) or ANY.
VERDICTS = {"PASS", "SKIP", "ERROR", "NOT_HANG", "NOT_LEAK", "NOT_FAIL", "ANY"} | KERNEL_PROBLEMS
#: A selftest's cases not declared one by one: 'PROGRAM: *' (e.g. "cow: *" = "NOT_FAIL").
EVERY_CASE = "*"
#: A declaration key is SCENARIO (every memory kind) or SCENARIO/MEMORY (that kind, taking precedence).
SEPARATOR = "/"
_GOOD = {Verdict.PASS, Verdict.SKIP}
_NO_ANSWER = {Verdict.ERROR, Verdict.BUILD_FAIL, Verdict.BOOT_FAIL, Verdict.PANIC, Verdict.VM_TIMEOUT}
_KERNEL_BROKE = {Verdict(v) for v in KERNEL_PROBLEMS} | {Verdict.PANIC, Verdict.BOOT_FAIL, Verdict.VM_TIMEOUT}
BAD = KERNEL_PROBLEMS


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


def judge(expected: Optional[str], verdict: Verdict) -> str:
    """One verdict against a declaration (None: nothing declared): expected, UNDECLARED (a PASS or SKIP
    nobody declared), REGRESSION (worse), FIXED (better) or UNEXPECTED (anything else, undeclared bad too)."""
    if expected is None:
        return UNDECLARED if verdict in _GOOD else UNEXPECTED
    no_answer = verdict in _NO_ANSWER and expected not in (verdict.value, "ANY")  # a panic is no "NOT_LEAK"
    if matches(expected, verdict) and not no_answer:
        return EXPECTED
    if verdict in _KERNEL_BROKE and expected not in BAD:
        return REGRESSION
    if verdict is Verdict.PASS and expected in BAD:
        return FIXED
    return UNEXPECTED


def worst(expected: Optional[str], verdicts: List[Verdict]) -> str:
    """The worst judgement over several runs of one cell (REGRESSION before UNEXPECTED before FIXED)."""
    return min({judge(expected, v) for v in verdicts}, key=PRIORITY.index)


def failing(mark: str) -> bool:
    return mark in FAILING


def expected_failure(expected: Optional[str], mark: str) -> bool:
    """A declared bad verdict that happened: an xfail, exit 0."""
    return mark == EXPECTED and expected in BAD


def check(expect: Dict[str, str], results: List[Result], memory: Optional[str] = None) -> List[str]:
    """One line per result the rule fails (only `memory` kinds when given); [] when all hold."""
    problems = []
    for r in results:
        if memory and r.memory != memory:
            continue
        want = declared(expect, r.scenario, r.memory)
        mark = judge(want, r.verdict)
        if failing(mark):
            problems.append(f"{mark}: {r.scenario}[{r.memory}]: {'expected ' + want if want else 'nothing declared'}"
                            f", got {r.verdict.value}: {r.reason}")
    return problems
