# SPDX-License-Identifier: GPL-2.0-only
"""What the plugin's fixtures give a test: the Kernel (one kernel's run for the session, what it lacks)
and the UffdVerdict (one cell and check(), the verdict rule as a test outcome)."""

from typing import TYPE_CHECKING, List, Optional

import pytest

if TYPE_CHECKING:
    from uffdprobe.results.matrix import Cell
    from uffdprobe.verdicts import Result

#: The words `@pytest.mark.needs(...)` takes; a test is skipped on a kernel that lacks one.
NEEDS = ("root", "uffd-wp", "thp", "odirect")


class DeclaredProblem(AssertionError):
    """The kernel did what its recipe declares it does wrong: the test is an expected failure."""


class Kernel:
    """One kernel's results for the session: label, identity, expectations, a Cell per scenario/memory."""

    def __init__(self, run, wanted: List[str], host: bool = False):
        from uffdprobe.results.matrix import Matrix

        self.run, self.label, self.wanted, self.host = run, run.label, wanted, host
        self.matrix = Matrix([run])

    @property
    def identity(self) -> dict:
        return self.run.identity

    def cell(self, scenario: str, memory: str = "anon-4k") -> "Cell":
        """Every run of scenario × memory on this kernel, with the declared expectation."""
        if scenario not in self.wanted:
            pytest.fail(
                f"scenario {scenario!r} was not run on {self.label}: mark the test "
                f"@pytest.mark.uffd_scenario({scenario!r})",
                pytrace=False,
            )
        found = self.matrix.cell(self.run, scenario, memory)
        if found is None:
            pytest.fail(
                f"{self.label}: no result for {scenario}({memory}); `uffdprobe list --all` shows "
                "each scenario's memory kinds",
                pytrace=False,
            )
        return found

    def lacks(self, need: str) -> Optional[str]:
        """Why this kernel lacks a need (from its own probes: the host's, or the guest's SKIP verdicts)."""
        if self.host:
            return _host_lacks(need)
        if need == "root":
            return None  # the guest init runs the scenarios as root
        from uffdprobe.scenarios.registry import SCENARIOS

        relevant = [
            r
            for r in self.run.results
            if (need == "thp" and r.memory == "anon-thp")
            or (need != "thp" and r.scenario in SCENARIOS and need in SCENARIOS[r.scenario].needs)
        ]
        if relevant and all(r.verdict.value == "SKIP" for r in relevant):
            return relevant[0].reason
        return None


def _host_lacks(need: str) -> Optional[str]:
    import os
    from uffdprobe.uffd import features, odirect
    from uffdprobe.scenarios.memkinds import unavailable
    from uffdprobe.scenarios.registry import why_not

    if need == "root":
        return None if os.geteuid() == 0 else "not running as root"
    if need == "thp":
        return unavailable("anon-thp")
    if need == "odirect":
        with odirect.target(None) as target:
            return why_not(need, features.probe(), target)
    return why_not(need, features.probe(), None)


class UffdVerdict:
    """What `uffd_verdict` gives a test: the cell on this kernel, and check() to turn it into an outcome."""

    def __init__(self, kernel: Kernel, cell: "Cell") -> None:
        self.kernel, self.cell = kernel, cell

    @property
    def results(self) -> List["Result"]:
        return self.cell.results

    def evidence_text(self) -> str:
        from uffdprobe.results import evidence as evidence_view

        lines = [
            f"{self.kernel.label} {self.cell.scenario}({self.cell.memory}): {self.cell.label}"
            f" (declared: {self.cell.expected or 'nothing'}; mark: {str(self.cell.mark) or 'undeclared'})"
        ]
        for r in self.cell.results:
            lines += [f"  {key}: {value}" for key, value in evidence_view.summary(r).items()]
        ident = self.kernel.identity
        lines.append(
            f"  kernel: {ident.get('release')} sha256={ident.get('sha256', '-')} "
            f"console={self.kernel.run.boot.get('console_log', '-')}"
        )
        return "\n".join(lines)

    def check(self) -> None:
        """The one rule (results.expect): PASS, SKIP or a declared-good verdict passes; a declared
        HANG/LEAK/WP_LOST that happened is an xfail(strict); anything else fails, FIXED included."""
        from uffdprobe.results.expect import FIXED, expected_failure, failing

        c = self.cell
        if all(r.verdict.value == "SKIP" for r in c.results):
            pytest.skip(f"{self.kernel.label}: {c.results[0].reason}")
        if expected_failure(c.expected, c.mark, [r.verdict for r in c.results]):
            raise DeclaredProblem(self.evidence_text())
        if not failing(c.mark):
            return
        if c.mark is FIXED and not c.flaky and xfail_strict(c):
            return  # the strict xfail turns this pass into a failure: the declaration is out of date
        pytest.fail(f"{c.mark}: " + self.evidence_text(), pytrace=False)


def xfail_strict(cell: "Cell") -> bool:
    """A cell declared bad is an xfail(strict), except a racy declaration ('HANG>=K/N') none of whose runs
    showed a kernel problem: those PASS runs are as declared (or FIXED, which check() fails itself)."""
    from uffdprobe.results.expect import declares_bad, parse

    if cell.expected is None or not declares_bad(cell.expected):
        return False
    return not parse(cell.expected).at_least or any(r.verdict.is_kernel_problem for r in cell.results)
