# SPDX-License-Identifier: GPL-2.0-only
"""Run the kernel's own mm selftests (built by kbuild.kselftest) on the running kernel, bounded, and turn
what they print into Results of their own, rows next to the scenarios.

Row identity: scenario "PROGRAM: CASE" (e.g. "cow: vmsplice() + unmap in child ... with base page"),
memory NO_MEMORY ("-": a selftest case is no memory kind); one more row "PROGRAM" for the run itself,
whose verdict is the program's own exit status by kselftest's convention (0 PASS, 1 FAIL, 4 SKIP) and
ERROR when it crashed, was killed at its bound or broke its TAP plan, HANG or STUCK when its tasks were
stuck in (or outside) handle_userfault at the bound. Its whole output and exit status are evidence,
kept as a file beside the verdicts.
"""

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

from uffdprobe.scenarios.memkinds import NO_MEMORY
from uffdprobe.verdicts import Result, Verdict
from . import kselftest_output, tasks
from .loop import exited, supervise
from .protocol import Bounds, Ending, Step
from .splat import SplatWatch

#: kselftest's exit statuses (tools/testing/selftests/kselftest.h).
KSFT_EXIT = {0: Verdict.PASS, 1: Verdict.FAIL, 2: Verdict.PASS, 3: Verdict.FAIL, 4: Verdict.SKIP}
SEPARATOR = ": "


@dataclass(frozen=True)
class Program:
    """One selftest program: how it is started by default, how its output reads, its time bound."""

    name: str
    question: str
    default_args: Tuple[str, ...] = ()
    style: str = "tap"  # "tap" (kselftest TAP/KTAP) or "uffd-unit" (uffd-unit-tests' own lines)
    timeout_s: float = 600.0
    cases_expected: bool = True  # False for an mm selftest asked by name: its exit status alone may answer


PROGRAMS: Dict[str, Program] = {
    p.name: p
    for p in (
        Program(
            "cow",
            "Does COW (fork, R/O pins, vmsplice, io_uring fixed buffers, KSM) keep parent and child "
            "apart on base pages, THPs, swapped-out pages and hugetlb?",
            timeout_s=600.0,
        ),
        Program(
            "gup_longterm",
            "Do longterm R/O and R/W GUP pins (gup_test, io_uring) behave on anon, shmem, file and hugetlb mappings?",
            timeout_s=300.0,
        ),
        # Only the uffd-wp + fork cases by default: wp-fork, wp-fork-with-event, wp-fork-pin(-with-event) ask
        # whether the uffd-wp bit survives fork(), early COW and a R/O longterm pin (the 2020 question);
        # move/minor/poison/events/sigbus exercise features the models do not touch and take most of the time
        # (a stock guest under TCG: all 66 cases 38 s, the 20 wp-fork ones 4 s).
        Program(
            "uffd-unit-tests",
            "Does the uffd-wp bit survive fork(), early COW and R/O longterm pins (wp-fork cases by default)?",
            default_args=("-f", "wp-fork"),
            style="uffd-unit",
            timeout_s=600.0,
        ),
    )
}


#: An mm selftest program's name, as its Makefile builds it.
PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def program_named(name: str) -> Program:
    """A program above, or any other mm selftest by its name (its TAP lines read if it prints them, its
    exit status the run row's verdict), added to PROGRAMS; KeyError for what cannot be a program's name."""
    found = PROGRAMS.get(name)
    if found is None:
        if not PROGRAM_NAME.match(name):
            raise KeyError(name)
        found = PROGRAMS[name] = Program(name, f"the kernel's own mm selftest {name}", cases_expected=False)
    return found


def parse_request(text: str) -> Tuple[Program, Tuple[str, ...]]:
    """'cow', 'uffd-unit-tests', 'uffd-unit-tests=all' or 'uffd-unit-tests=FILTER' (its -f), or any mm
    selftest's name: the program and its arguments; KeyError naming what is no program's name,
    ValueError for an argument it takes none of."""
    name, eq, arg = text.partition("=")
    program = program_named(name)
    if not eq:
        return program, program.default_args
    if program.style != "uffd-unit":
        raise ValueError(f"{name} takes no =ARGUMENT (only uffd-unit-tests=all or =FILTER)")
    if not arg:
        raise ValueError("write uffd-unit-tests=all or uffd-unit-tests=FILTER (a test name part, e.g. wp-fork)")
    return program, () if arg == "all" else ("-f", arg)


def requests(items: List[str]) -> List[str]:
    """--kselftest values (repeatable, comma-separated) as one list in order, duplicates dropped."""
    out: List[str] = []
    for item in items or []:
        for part in item.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def case_scenario(program: str, case: str) -> str:
    return f"{program}{SEPARATOR}{case}"


def is_selftest_row(scenario: str) -> bool:
    """Whether a row's scenario names a selftest program or one of its cases."""
    return scenario in PROGRAMS or scenario.split(SEPARATOR, 1)[0] in PROGRAMS and SEPARATOR in scenario


def run(
    request: str,
    bin_dir: Path,
    out_dir: Optional[Path],
    kernel: dict,
    on_result: Callable[[Result], None],
    splats: Optional[SplatWatch] = None,
) -> List[Result]:
    """Run one requested program to its end (bounded); its run row first, then one Result per case. With
    `splats`, a splat while the program ran judges its run row (WARN/OOPS; the cases keep their verdicts)."""
    import tempfile  # here: every run imports this module, and tempfile brings random and shutil

    program, args = parse_request(request)
    binary = Path(bin_dir) / program.name
    argv = [str(binary), *args]
    params = {"argv": argv[1:]} if args else {}
    if not os.access(binary, os.X_OK):
        row = Result(
            program.name,
            NO_MEMORY,
            Verdict.ERROR,
            f"{binary} is not there or not executable (built "
            "selftests must be visible here: a cache under /tmp is not, in a guest)",
            {},
            kernel,
            params,
            0.0,
        )
        on_result(row)
        return [row]
    with tempfile.TemporaryDirectory(prefix="uffdprobe-kselftest-") as scratch:  # no --results-dir: not kept
        keep = Path(out_dir) if out_dir else Path(scratch)
        keep.mkdir(parents=True, exist_ok=True)
        log = keep / f"kselftest-{program.name}.txt"
        # a fresh working folder: the selftests make files in theirs
        with tempfile.TemporaryDirectory(prefix="uffdprobe-kselftest-cwd-") as cwd, open(log, "wb") as sink:
            policy = _Selftest(program, argv, sink, log, cwd, bool(out_dir), bin_dir, kernel, params)
            results = supervise(policy, Bounds(total_s=program.timeout_s), splats)
    for r in results:
        on_result(r)
    return results


class _Selftest:
    """A selftest binary as a Workload (protocol.py): output (stdout and stderr) into its log, nothing to
    look at until its bound; then its tasks say HANG or STUCK. Rows: the run's, then one per case."""

    def __init__(
        self,
        program: Program,
        argv: List[str],
        sink: BinaryIO,
        log: Path,
        cwd: str,
        kept: bool,
        bin_dir: Path,
        kernel: dict,
        params: dict,
    ):
        self.program, self.argv, self.sink, self.log, self.cwd = program, argv, sink, log, cwd
        self.kernel, self.params = kernel, params
        self.base: Dict[str, Any] = {
            "program": program.name,
            "argv": argv,
            "exit_status": None,
            "log": str(log) if kept else "not kept (no --results-dir)",
            "selftests_from": built_from(bin_dir),
        }
        self.proc: Optional[subprocess.Popen] = None
        self.text, self.parsed = "", kselftest_output.Output([])

    def start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.sink,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self.proc

    def wait(self, seconds: float) -> bool:
        return exited(self.proc, seconds)

    def tick(self, now: float) -> Step:
        return Step.GO_ON

    def result(self, ending: Ending) -> Result:
        assert self.proc is not None
        exit_status = self.proc.returncode if ending.ended else None
        stuck = None
        if ending.timed_out:
            found = ending.at_bound or []
            stuck = {
                "tasks": found,
                "in_userfault": [t for t in found if tasks.in_userfault(t)],
                "after_s": self.program.timeout_s,
            }
        self.text = self.log.read_text(errors="replace") if self.log.exists() else ""
        self.parsed = (
            kselftest_output.parse_uffd_unit if self.program.style == "uffd-unit" else kselftest_output.parse_tap
        )(self.text)
        self.base["exit_status"] = exit_status
        return _run_row(
            self.program, self.parsed, exit_status, stuck, ending.took, self.base, self.text, self.kernel, self.params
        )

    def rows(self, judged: Result) -> List[Result]:
        name, base, parsed = self.program.name, self.base, self.parsed
        results = [judged] + [_case_row(name, c, base, self.kernel, self.params) for c in parsed.cases]
        if parsed.unfinished is not None:
            verdict = judged.verdict if judged.verdict in (Verdict.HANG, Verdict.STUCK) else Verdict.ERROR
            results.append(
                Result(
                    case_scenario(name, parsed.unfinished),
                    NO_MEMORY,
                    verdict,
                    f"started but never reported: {judged.reason}",
                    {**base, "output": parsed.unfinished_lines},
                    self.kernel,
                    self.params,
                    None,
                )
            )
        judged.evidence["rows"] = len(results)  # its own and its cases': a KTAP group knows its size from it
        return results


def built_from(bin_dir: Path) -> str:
    """Which tree the selftests came from: the build's identity.json beside bin/ (kbuild.kselftest's
    cache layout: 'linux-source-6.12.tar.xz (6.12.118)'), else the folder they were found in."""
    try:
        ident = json.loads((Path(bin_dir).parent / "identity.json").read_text())
        src = ident["source"]
        name = src.get("name") or src.get("path") or f"{src.get('repo')}@{src.get('commit')}"
        return f"{name} ({ident['version']})" if ident.get("version") else str(name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return str(bin_dir)


def _run_row(program: Program, parsed, exit_status, stuck, took, base, text, kernel, params) -> Result:
    counts: Dict[str, int] = {}
    for c in parsed.cases:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    evidence = {
        **base,
        "duration_s": took,
        "cases": len(parsed.cases),
        "counts": counts,
        "plan": parsed.plan,
        "totals": parsed.totals,
        "output_tail": text.splitlines()[-15:],
    }
    if stuck is not None:
        evidence["stuck"] = stuck
        verdict = Verdict.HANG if stuck["in_userfault"] else Verdict.STUCK
        where = "in handle_userfault" if stuck["in_userfault"] else "outside handle_userfault"
        return Result(
            program.name,
            NO_MEMORY,
            verdict,
            f"still running after {program.timeout_s:g}s, "
            f"{len(stuck['in_userfault']) or len(stuck['tasks'])} task(s) {where}: killed",
            evidence,
            kernel,
            params,
            took,
        )
    if exit_status is None or exit_status < 0:
        return Result(
            program.name,
            NO_MEMORY,
            Verdict.ERROR,
            f"killed by signal {-(exit_status or 0)}",
            evidence,
            kernel,
            params,
            took,
        )
    if parsed.plan is not None and parsed.plan != len(parsed.cases):
        return Result(
            program.name,
            NO_MEMORY,
            Verdict.ERROR,
            f"exit {exit_status} after {len(parsed.cases)} of the {parsed.plan} planned results",
            evidence,
            kernel,
            params,
            took,
        )
    verdict = KSFT_EXIT.get(exit_status, Verdict.ERROR)
    if not parsed.cases and verdict is not Verdict.SKIP and program.cases_expected:
        verdict = Verdict.ERROR
    summary = ", ".join(f"{v} {n}" for v, n in sorted(counts.items())) or "no cases"
    return Result(
        program.name,
        NO_MEMORY,
        verdict,
        f"exit {exit_status}: {summary}" + (f" ({parsed.totals})" if parsed.totals else ""),
        evidence,
        kernel,
        params,
        took,
    )


def _case_row(program: str, c, base: dict, kernel: dict, params: dict) -> Result:
    return Result(
        case_scenario(program, c.name),
        NO_MEMORY,
        Verdict(c.verdict),
        c.reason,
        {
            "program": program,
            "number": c.number,
            "output": c.lines,
            "log": base["log"],
            "exit_status": base["exit_status"],
            "selftests_from": base["selftests_from"],
        },
        kernel,
        params,
        None,
    )
