# SPDX-License-Identifier: GPL-2.0-only
"""KTAP version 1 (the kernel's Documentation/dev-tools/ktap.rst), written line by line as verdicts arrive.

Nesting: the top level has one test per kernel; a kernel's subtests are its scenarios (one per run with
--runs N, named SCENARIO.runN); a scenario's subtests are its memory kinds, named SCENARIO.MEMORY[.runN]
so every name is unique in the whole output. Every level starts with "KTAP version 1", a "# Subtest:"
line (what kunit.py uses to name a parent) and its plan "1..N", known in advance from the run's plan;
a parent's result line comes after its last subtest.

Each result line is preceded by its evidence as "# key: value" diagnostic lines (verdict, reason, task
state, wchan, stack, pending uffd messages, rescue, logs). Directives, as the spec lists them:
  SKIP     ok N name # SKIP reason
  ERROR    not ok N name # ERROR reason          (ERROR and BUILD_FAIL: the harness gave no answer)
  TIMEOUT  not ok N name # TIMEOUT reason        (VM_TIMEOUT)
  XFAIL    ok N name # XFAIL declared HANG: ...  (a bad verdict the kernel is declared to have)
HANG, LEAK, WP_LOST, FAIL, STUCK, PANIC, BOOT_FAIL and FIXED have no directive: "not ok" with the verdict in the
diagnostic lines. A parent fails when a subtest fails; it is skipped when all its subtests are.

A row nobody planned (the kernel log's own row: a splat outside every workload) cannot join a plan
already printed: it is written as diagnostic lines at the end of its kernel's subtree, and fails the
kernel's result line when its verdict fails.
"""

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, TextIO, Tuple

from uffdprobe.scenarios.memkinds import NO_MEMORY
from uffdprobe.supervise.kselftest import is_selftest_row
from uffdprobe.verdicts import KERNEL_PROBLEMS, Result, Verdict
from . import evidence as evidence_view

if TYPE_CHECKING:
    from .matrix import KernelRun

OK, FAIL, SKIP = "ok", "not ok", "skip"
#: (verdict, reason) -> (status, directive or '') for a leaf; None means "no declaration known".
Judge = Callable[[Result], Tuple[str, str]]
#: What joins a selftest program and its case in a row's scenario ('cow: vmsplice() ... with base page').
SELFTEST = ": "
_NO_DIRECTIVE_BAD = {Verdict(v) for v in KERNEL_PROBLEMS} | {Verdict.PANIC, Verdict.BOOT_FAIL}


def one_line(text: str) -> str:
    """Result lines and diagnostics are single lines; a description cannot hold '#'."""
    return " ".join(str(text).replace("#", "No.").split())


def plain_judge(r: Result) -> Tuple[str, str]:
    """With nothing declared: PASS passes, SKIP skips, anything else fails (with its directive, if any)."""
    if r.verdict is Verdict.PASS:
        return OK, ""
    if r.verdict is Verdict.SKIP:
        return SKIP, f"SKIP {one_line(r.reason)}"
    if r.verdict in (Verdict.ERROR, Verdict.BUILD_FAIL):
        return FAIL, f"ERROR {one_line(r.reason)}"
    if r.verdict is Verdict.VM_TIMEOUT:
        return FAIL, f"TIMEOUT {one_line(r.reason)}"
    return FAIL, ""


def leaf_name(r: Result) -> str:
    run = r.params.get("run")
    if r.memory == NO_MEMORY and is_selftest_row(r.scenario):  # its case name, or the program's own run
        return (r.scenario if SELFTEST in r.scenario else f"{r.scenario}{SELFTEST}exit status") + (
            f".run{run}" if run else ""
        )
    return f"{r.scenario}.{r.memory}" + (f".run{run}" if run else "")


def group_of(scenario: str, run: Optional[int]) -> str:
    """A scenario's group is itself; a selftest case ('cow: CASE') is in its program's group."""
    return scenario.split(SELFTEST, 1)[0] + (f".run{run}" if run else "")


class Writer:
    """The top level: `kernels` kernel tests, each opened with kernel() and closed before the next."""

    def __init__(self, out: TextIO, kernels: int, about: List[str]):
        self.out, self.number = out, 0
        self._emit(0, "KTAP version 1")
        self._emit(0, f"1..{kernels}")
        for line in about:
            self._emit(0, f"# {one_line(line)}")

    def _emit(self, depth: int, line: str) -> None:
        self.out.write("  " * depth + line + "\n")
        self.out.flush()

    def kernel(
        self, name: str, plan: List[Tuple[str, str, Optional[int]]], about: List[str], judge: Judge = plain_judge
    ) -> "KernelTest":
        self.number += 1
        return KernelTest(self, self.number, one_line(name), plan, about, judge)


class KernelTest:
    """One kernel's subtree; add() each Result as it lands (in plan order), then close()."""

    def __init__(
        self,
        top: Writer,
        number: int,
        name: str,
        plan: List[Tuple[str, str, Optional[int]]],
        about: List[str],
        judge: Judge,
    ):
        self.top, self.number, self.name, self.judge = top, number, name, judge
        self.groups: Dict[str, int] = {}
        for scenario, _memory, run in plan:
            key = group_of(scenario, run)
            self.groups[key] = self.groups.get(key, 0) + 1
        self.statuses: List[str] = []  # of the closed scenario groups
        self.unplanned: List[Result] = []
        self.open: Optional[str] = None
        self.leaves: List[str] = []  # statuses in the open group
        self.identified = False
        emit = top._emit
        emit(1, "KTAP version 1")
        emit(1, f"# Subtest: {name}")
        emit(1, f"1..{len(self.groups)}")
        for line in about:
            emit(1, f"# {one_line(line)}")

    def add(self, r: Result) -> None:
        emit = self.top._emit
        if not self.identified and r.kernel.get("release"):
            self.identified = True
            emit(
                1,
                "# kernel: "
                + one_line(
                    ", ".join(f"{k}={r.kernel[k]}" for k in ("release", "version", "sha256") if r.kernel.get(k))
                ),
            )
        key = group_of(r.scenario, r.params.get("run"))
        if key not in self.groups and key != self.open and not isinstance(r.evidence.get("rows"), int):
            self.unplanned.append(r)
            return
        if key != self.open:
            self._close_group()
            self.open = key
            if isinstance(r.evidence.get("rows"), int):  # a selftest's run row: its cases follow it
                self.groups[key] = r.evidence["rows"]
            emit(2, "KTAP version 1")
            emit(2, f"# Subtest: {key}")
            emit(2, f"1..{self.groups.get(key, 1)}")
        status, directive = self.judge(r)
        for name, value in evidence_view.summary(r).items():
            emit(3, f"# {name}: {one_line(value)}")
        self.leaves.append(status)
        word = OK if status == SKIP else status
        emit(3, f"{word} {len(self.leaves)} {leaf_name(r)}" + (f" # {directive}" if directive else ""))

    def _close_group(self) -> None:
        if self.open is None:
            return
        status = _parent(self.leaves)
        self.statuses.append(status)
        self.top._emit(2, _line(status, len(self.statuses), self.open))
        self.open, self.leaves = None, []

    def close(self, note: str = "") -> str:
        """End the kernel's subtree (its status line at the top level); its status."""
        self._close_group()
        if note:
            self.top._emit(1, f"# {one_line(note)}")
        failed = []
        for r in self.unplanned:
            status, directive = self.judge(r)
            self.top._emit(
                1,
                f"# {leaf_name(r)}: {'not ok' if status == FAIL else 'ok'} (not in the plan)"
                + (f" # {directive}" if directive else ""),
            )
            for name, value in evidence_view.summary(r).items():
                self.top._emit(1, f"# {leaf_name(r)} {name}: {one_line(value)}")
            failed += [FAIL] if status == FAIL else []
        status = _parent(self.statuses + failed)
        self.top._emit(0, _line(status, self.number, self.name))
        return status


def _parent(statuses: List[str]) -> str:
    if FAIL in statuses:
        return FAIL
    return SKIP if statuses and all(s == SKIP for s in statuses) else OK


def _line(status: str, number: int, name: str) -> str:
    return f"ok {number} {name} # SKIP" if status == SKIP else f"{status} {number} {name}"


def declared_judge(k: "KernelRun") -> Judge:
    """For a matrix kernel (a results.matrix.KernelRun): a result judged against its declaration the way
    its matrix cell is: an unexpected mark fails, a declared bad verdict that happened is XFAIL."""
    from .matrix import EXPECTED, Matrix

    def judge(r: Result) -> Tuple[str, str]:
        status, directive = plain_judge(r)
        declared = Matrix([k]).cell(k, r.scenario, r.memory)
        if declared is None:
            return status, directive
        single = type(declared)(k.label, r.scenario, r.memory, [r], declared.expected)
        if single.unexpected:
            return FAIL, directive if status == FAIL else ""
        if status == FAIL and single.mark is EXPECTED:
            return OK, f"XFAIL declared {single.expected}: {one_line(r.reason)}"
        return status, directive

    return judge


def write_kernel(top: Writer, k: "KernelRun", plan: List[Tuple[str, str, Optional[int]]]) -> str:
    """A finished matrix kernel's whole subtree, its results in plan order; the kernel's status."""
    order = {item: i for i, item in enumerate(plan)}
    results = sorted(
        k.results,
        key=lambda r: order.get(
            (r.scenario, r.memory, r.params.get("run")),
            order.get((group_of(r.scenario, None), r.memory, r.params.get("run")), len(order)),
        ),
    )
    plan = [(r.scenario, r.memory, r.params.get("run")) for r in results]  # selftest cases are known now
    about = [f"{key}: {k.identity[key]}" for key in ("recipe", "path", "sha256") if k.identity.get(key)]
    kt = top.kernel(k.label, plan, about, declared_judge(k))
    for r in results:
        kt.add(r)
    facts = ", ".join(
        f"{key}={k.boot[key]}"
        for key in ("seconds", "exit_status", "console_log", "log")
        if k.boot.get(key) not in (None, "")
    )
    return kt.close(f"boot: {facts}" if facts else "")
