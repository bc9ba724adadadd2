# SPDX-License-Identifier: GPL-2.0-only
"""The verdict model (docs/design.md): exactly one verdict per scenario run, with evidence."""

import enum
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Dict, Optional


class Verdict(str, enum.Enum):
    """How one scenario run ended: exactly one per run, judged against declarations by results/expect.py."""

    PASS = "PASS"
    HANG = "HANG"  #: a task blocked in handle_userfault on a fault nobody will answer
    LEAK = "LEAK"  #: data crossed a COW boundary it must not cross
    WP_LOST = "WP_LOST"  #: a real write to a write-protected page was not trapped
    FAIL = "FAIL"  #: a workload (a program under --exec, a kselftest case) reported failure
    STUCK = "STUCK"  #: a workload's task stuck outside handle_userfault (D state or spinning)
    WARN = "WARN"  #: the kernel logged a WARNING (or lockdep report, or a new taint bit) while it ran
    OOPS = "OOPS"  #: the kernel logged a BUG/Oops/KASAN report that did not panic while it ran
    REFUSED = "REFUSED"  #: the kernel refused a valid request (the errno is the evidence)
    SKIP = "SKIP"  #: the kernel lacks a feature the scenario needs (probed)
    ERROR = "ERROR"  #: the harness or the setup failed
    BUILD_FAIL = "BUILD_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    PANIC = "PANIC"
    VM_TIMEOUT = "VM_TIMEOUT"

    @property
    def is_kernel_problem(self) -> bool:
        return self.value in KERNEL_PROBLEMS


#: The verdicts that are the kernel's answer "no": exit 1 when undeclared, declarable as expected failures.
KERNEL_PROBLEMS = frozenset({"HANG", "LEAK", "WP_LOST", "FAIL", "STUCK", "WARN", "OOPS", "REFUSED"})


def plain(value: Any) -> Any:
    """`value` as JSON data: dicts with string keys, lists, str/int/float/bool/None. Flags become lists
    of their names, other enums their value, dataclasses dicts, paths and anything else strings."""
    if isinstance(value, enum.Flag):
        return [m.name for m in type(value) if m.value and value & m == m]
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    return str(value)


@dataclass
class Outcome:
    """What a scenario concluded from what it observed, before the supervisor adds its own view."""

    verdict: Verdict
    reason: str
    evidence: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """One scenario on one memory kind on one kernel: the unit of every report."""

    scenario: str
    memory: str
    verdict: Verdict
    reason: str
    evidence: Dict[str, Any] = field(default_factory=dict)
    kernel: Dict[str, Any] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)
    duration_s: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: evidence is plain data (see `plain`), never a Python repr."""
        d: Dict[str, Any] = plain(asdict(self))
        d["verdict"] = self.verdict.value
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Result":
        return cls(**{**d, "verdict": Verdict(d["verdict"])})
