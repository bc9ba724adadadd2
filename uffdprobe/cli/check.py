# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe check`: every catalogue defect on every kernel given, PRESENT / ABSENT / CANNOT ASK, with the fix.

It is `uffdprobe matrix` over the scenarios that carry a defect (one boot per kernel, the same outputs,
declarations and verdict rule); only the summary differs: per defect and kernel the answer, its evidence
and, for a PRESENT one, the commits to backport. A PRESENT defect nothing declares is a kernel problem
(exit 1); any other cell the rule fails (a declared defect now absent, no answer) exits 7 as in matrix,
and so does a defect with NO ANSWER whose cells are as declared (a declared PANIC that names no frame of
the defect: the kernel died, but not visibly of it).
"""

import argparse
from typing import TextIO

from uffdprobe.exitcodes import Exit
from uffdprobe.results import catalogue, table as matrix_table
from uffdprobe.results.matrix import Matrix
from uffdprobe.scenarios.catalogue import describe_fix
from uffdprobe.scenarios.registry import SCENARIOS
from .matrix import cmd_matrix
from .matrix_outputs import Report
from .run import _seconds, runs_count
from .vocab import add_accel, add_verbosity, complete_kernel, completes, kcidb_options


def defect_scenarios() -> list:
    """The public scenarios that ask about a catalogue defect, in table order."""
    return [s.name for s in SCENARIOS.values() if s.defect is not None and not s.test_only]


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="which known userfaultfd/GUP/COW defects each kernel carries, and the fix")
    completes(
        p.add_argument(
            "--kernel",
            action="append",
            metavar="[LABEL=]K",
            help="repeatable (default: host): 'host', a recipe name or .toml path, a "
            "bzImage/vmlinuz or a linux-image .deb, as in matrix",
        ),
        complete_kernel,
    )
    p.add_argument(
        "--defect",
        action="append",
        default=[],
        metavar="ID",
        help="repeatable: ask only these defects (default: every one; `uffdprobe list` names them)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scenario parameter for every kernel's run, as in matrix: e.g. tries=5 asks a racy defect "
        "on fewer tries (sooner, and a larger miss probability in its answer)",
    )
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="[KERNEL:]SCENARIO[/MEMORY]=VERDICT",
        help="accept a known defect (or declare anything else), as in matrix; a recipe's [expect] "
        "already declares its own",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write the defects, the answers and the matrix as JSON (- for stdout; the summary then goes to stderr)",
    )
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: a testcase per kernel × scenario × memory")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page (evidence on click)")
    p.add_argument("--ktap", metavar="FILE|-", help="KTAP as in matrix ('-' on stdout)")
    p.add_argument("--parallel", dest="jobs", type=runs_count, default=1, metavar="J", help="kernels at once")
    p.add_argument(
        "--results-dir",
        metavar="DIR",
        help="per-kernel logs and check.json (default: a new folder under $XDG_CACHE_HOME/uffdprobe/matrix)",
    )
    kcidb_options(p)
    add_accel(p)
    p.add_argument(
        "--vm-timeout",
        type=_seconds,
        default=900.0,
        metavar="S",
        help="limit for each kernel's boot and every defect in it (default 900)",
    )
    add_verbosity(p)
    # what matrix reads and check does not offer: one run each, every memory kind, no extra workloads
    p.set_defaults(
        func=cmd_check,
        memory=None,
        runs=1,
        kselftest=[],
        kselftest_from=None,
        cluster=None,
        scenarios_from=[],
        exec=None,
        exec_label=None,
        scratch_fs=None,
        scratch_mb=None,
    )


def _show(m: Matrix, out: TextIO, took_s: float) -> int:
    found = catalogue.answers(m)
    catalogue.render(found, out)
    problems = catalogue.undeclared_present(found)
    shown = {(a.kernel, c.scenario, c.memory) for a in problems for c in a.cells if c.unexpected}
    others = [c for c in m.unexpected() if (c.kernel, c.scenario, c.memory) not in shown]  # FIXED, ERROR...
    for a in problems:
        print(f"NOT DECLARED: {a.defect.id} is PRESENT on {a.kernel}: backport {describe_fix(a.defect)}", file=out)
    for line in matrix_table.unexpected_lines(m, others):
        print(line, file=out)
    # no answer whose cells the rule accepts (a declared PANIC without the defect's frame in its report)
    unanswered = [a for a in found if a.answer == catalogue.NO_ANSWER and not any(c.unexpected for c in a.cells)]
    for a in unanswered:
        print(f"NO ANSWER: {a.defect.id} on {a.kernel}: {a.why}", file=out)
    counts = {w: sum(a.answer == w for a in found) for w in catalogue.ANSWERS}
    print(
        f"check: {len(found)} answer(s) on {len(m.kernels)} kernel(s) in {took_s:.1f}s: "
        + ", ".join(f"{n} {w}" for w, n in counts.items() if n),
        file=out,
        flush=True,
    )
    if problems:
        return Exit.KERNEL_PROBLEM
    return Exit.UNEXPECTED if others or unanswered else Exit.OK


CHECK = Report("check", lambda m: catalogue.to_dict(m, catalogue.answers(m)), _show)


def cmd_check(args: argparse.Namespace) -> int:
    from uffdprobe.exitcodes import UsageError
    from uffdprobe.scenarios.catalogue import by_defect

    known = {d.id: [s.name for s in ss] for d, ss in by_defect(SCENARIOS[n] for n in defect_scenarios())}
    unknown = [d for d in args.defect if d not in known]
    if unknown:
        raise UsageError(f"unknown defect {', '.join(unknown)}; known: {', '.join(known)}")
    args.scenario = [n for d in (args.defect or known) for n in known[d]]
    args.kernel = args.kernel or ["host"]
    return cmd_matrix(args, CHECK)
