"""Declared expectations (a recipe's [expect] table) against measured verdicts."""
from typing import Dict, List, Optional

from uffdprobe.verdicts import Result, Verdict


def matches(expected: str, verdict: Verdict) -> bool:
    """PASS/HANG/... must be equal; NOT_HANG and NOT_LEAK mean anything but that; ANY takes all."""
    if expected == "ANY":
        return True
    if expected.startswith("NOT_"):
        return verdict.value != expected[4:] and verdict is not Verdict.ERROR
    return verdict.value == expected


def check(expect: Dict[str, str], results: List[Result], memory: Optional[str] = "anon-4k") -> List[str]:
    """One line per result that contradicts `expect` (only `memory` kinds when given); [] when all hold."""
    problems = []
    for r in results:
        want = expect.get(r.scenario)
        if want is None or (memory and r.memory != memory):
            continue
        if not matches(want, r.verdict):
            problems.append(f"{r.scenario}[{r.memory}]: expected {want}, got {r.verdict.value}: {r.reason}")
    return problems
