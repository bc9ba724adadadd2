# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe matrix`: every scenario on every kernel, one boot each, as a table, JSON, JUnit and HTML."""

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from uffdprobe.results import table as matrix_table
from uffdprobe.exitcodes import Exit, UsageError
from uffdprobe.results.matrix import Matrix
from uffdprobe.osutil import children
from uffdprobe.osutil.files import usable_dir
from uffdprobe.run.kernels import check_kernels, declare, parse_expect
from uffdprobe.run import selftests
from uffdprobe.run.matrix import planned, run_all
from uffdprobe.run import request as run_request
from uffdprobe.run.request import RunRequest
from .run import _seconds, check_writable, runs_count
from uffdprobe.scenarios.memkinds import ALL_KINDS
from uffdprobe.vm.paths import cache_root, new_run_dir
from .vocab import (
    add_accel,
    add_verbosity,
    check_kcidb,
    complete_kernel,
    complete_scenario,
    completes,
    deprecated,
    kcidb_options,
    kselftest_from_option,
)
from . import matrix_outputs, user_scenarios
from .matrix_outputs import Report


def add_parser(sub) -> None:
    p = sub.add_parser("matrix", help="every scenario on every kernel, side by side (one boot per kernel)")
    completes(
        p.add_argument(
            "--kernel",
            action="append",
            required=True,
            metavar="[LABEL=]K",
            help="repeatable: 'host' (the running kernel), a recipe name or .toml path, a "
            "bzImage/vmlinuz or a linux-image .deb; LABEL= names it (default: host, the "
            "recipe name, or the file name plus a short content hash)",
        ),
        complete_kernel,
    )
    completes(
        p.add_argument("--scenario", action="append", default=[], metavar="S", help="repeatable (default: all public)"),
        complete_scenario,
    )
    p.add_argument("--memory", action="append", choices=ALL_KINDS, help="memory kinds (default: all each supports)")
    p.add_argument(
        "--runs",
        type=runs_count,
        default=1,
        metavar="N",
        help="repeat every scenario N times in the same boot; disagreeing runs make a FLAKY cell",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scenario parameter passed to every kernel's run",
    )
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="[KERNEL:]SCENARIO[/MEMORY]=VERDICT",
        help="declare an expected verdict (overrides the recipe's); without /MEMORY for every memory "
        "kind, e.g. host:wp-real-write=PASS, model-5.8:umap-evict/anon-thp=HANG",
    )
    p.add_argument(
        "--kselftest",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="every kernel also runs these mm selftests after its scenarios, in the same boot (cow, "
        "gup_longterm, uffd-unit-tests, or any mm selftest by name); each case is a row "
        "'NAME: CASE' (memory '-')",
    )
    kselftest_from_option(p)
    p.add_argument("--json", metavar="FILE", help="write the matrix (kernels, cells, every result) as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: a testcase per kernel × scenario × memory")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page (evidence on click)")
    kcidb_options(p)
    p.add_argument(
        "--ktap",
        metavar="FILE|-",
        help="KTAP (kernel, scenario, memory kind nested), each kernel "
        "as it finishes: '-' on stdout (the table goes to stderr), else FILE (whole when the "
        "matrix ends; a FIFO or device as it goes)",
    )
    p.add_argument(
        "--parallel",
        dest="jobs",
        type=runs_count,
        default=1,
        metavar="J",
        help="kernels run at once (default 1: one TCG guest already uses both cores; with --cluster "
        "the workers' vm slots decide)",
    )
    p.add_argument(
        "--jobs", dest="jobs", type=runs_count, action=deprecated("--parallel"), help=argparse.SUPPRESS
    )  # --jobs is make -j in kernel build and bisect
    p.add_argument(
        "--cluster",
        metavar="ADDRESS|local:N",
        help="run the booted kernels on a Dask cluster: its scheduler (tcp://HOST:8786) or local:N "
        "worker processes here (pip install 'uffdprobe[cluster]'); host runs here",
    )
    p.add_argument(
        "--results-dir",
        metavar="DIR",
        help="per-kernel logs and results (default: a new folder under $XDG_CACHE_HOME/uffdprobe/matrix)",
    )
    add_accel(p)
    p.add_argument(
        "--vm-timeout",
        type=_seconds,
        default=900.0,
        metavar="S",
        help="limit for each kernel's boot and every scenario in it (default 900)",
    )
    user_scenarios.add_option(p)
    add_verbosity(p)
    from . import execopts

    execopts.add_options(p, _seconds)
    p.set_defaults(func=cmd_matrix)


_SAY_LOCK = threading.Lock()


def _say(text: str) -> None:
    """A progress line on stderr, whole even when kernels run in parallel."""
    with _SAY_LOCK:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _silent(text: str) -> None:
    """-q: progress lines are dropped (the table, the summary and errors still print)."""


def _show_matrix(m: Matrix, out: TextIO, took_s: float) -> int:
    """The kernel × scenario table, its legend and one line per unexpected cell; exit 7 if any."""
    print(matrix_table.render(m, colour=matrix_table.colour_wanted(out)), file=out, flush=True)
    print(matrix_table.LEGEND, file=out)
    unexpected = matrix_table.unexpected_lines(m)
    for line in unexpected:
        print(line, file=out)
    print(
        f"matrix: {len(m.cells())} cell(s) on {len(m.kernels)} kernel(s) in {took_s:.1f}s, "
        f"{len(unexpected)} unexpected",
        file=out,
        flush=True,
    )
    return Exit.UNEXPECTED if unexpected else Exit.OK


MATRIX = Report("matrix", Matrix.to_dict, _show_matrix)


def cmd_matrix(args: argparse.Namespace, output: Report = MATRIX) -> int:
    check_writable(
        ("--json", args.json),
        ("--junit", args.junit),
        ("--html", args.html),
        ("--ktap", args.ktap),
        ("--kcidb", args.kcidb),
    )
    if args.json == "-" and args.ktap == "-":
        raise UsageError("--json - and --ktap - both want stdout: write one of them to a file")
    check_kcidb(args)
    scenarios_from = user_scenarios.load(args)  # before a recipe's [expect] or --expect names one of them
    from . import execopts

    program, row = execopts.check(args)  # before --expect, which may name the program's row
    targets = check_kernels(args.kernel)
    _refuse_before_anything_boots(args, targets)
    declare(targets, parse_expect(args.expect, targets))
    # every kernel's run: the matrix's own outputs and declarations are not its children's
    request = run_request.build(
        vars(args),
        scenarios=args.scenario,
        exec=program,
        exec_row=row,
        kselftest=selftests.chosen(args.kselftest),
        kernel=None,
        json=None,
        ktap=None,
        results_dir=None,
        kcidb=None,
        origin=None,
        kcidb_url=None,
        expect=(),
        scenarios_from=user_scenarios.check_guests_see(targets, scenarios_from),
    )
    say = _say if args.verbosity >= 0 else _silent
    owed = planned(request)
    # the logs and matrix.json are kept (the reports point at the logs): a folder of the cache's, like
    # a run's, made only once nothing is left to refuse, so a refused matrix leaves nothing behind
    work = Path(args.results_dir).absolute() if args.results_dir else new_run_dir(cache_root() / "matrix", create=False)
    usable_dir(
        work,
        "--results-dir" if args.results_dir else "the matrix folder",
        "name a writable folder" if args.results_dir else "point XDG_CACHE_HOME at a writable folder",
        create=False,
    )
    say(f"matrix: {len(targets)} kernel(s) × {len(owed)} run(s) each")
    engine = None
    if args.cluster:  # connected (or refused, exit 2) before anything builds or boots
        from uffdprobe.run.engine_dask import open_engine

        engine = open_engine(args.cluster, say)
    try:
        return _run_matrix(args, targets, request, say, work, owed, engine, output)
    finally:
        if engine is not None:
            engine.close()


def _refuse_before_anything_boots(args: argparse.Namespace, targets) -> None:
    """What a kernel's run would refuse anyway, refused here, before any build or boot: --scratch-fs on
    the host (no scratch disk to format in a matrix), an empty --cluster."""
    from uffdprobe.uffd import odirect

    if (
        args.scratch_fs not in (None, "none")
        and not os.environ.get(odirect.SCRATCH_ENV)
        and any(t.path is None and t.recipe is None for t in targets)
    ):  # neither a file nor a recipe: the host
        raise UsageError(
            f"--scratch-fs {args.scratch_fs} formats a guest's scratch disk; the host has none in a "
            "matrix: drop --kernel host, or run it alone with `uffdprobe run --scratch-fs "
            f"{args.scratch_fs} --odirect-target BLANK_BLOCK_DEVICE`"
        )
    if args.cluster is not None and not args.cluster.strip():
        raise UsageError(
            "--cluster '': write local:N (N worker processes here) or the scheduler's address, e.g. tcp://HOST:8786"
        )


def _run_matrix(
    args: argparse.Namespace, targets, request: RunRequest, say, work: Path, owed: list, engine, output: Report
) -> int:
    started = time.monotonic()  # the summary's time: kernel builds, the selftest build and every run
    if any(planned(request, t) != owed for t in targets) or request.workload.kselftest:
        selftests_started = time.monotonic()
        _selftests(say, request)  # once, before the kernels' builds and runs (each run would wait for it)
        say(f"matrix: selftests ready in {time.monotonic() - selftests_started:.1f}s")
    work.mkdir(parents=True, exist_ok=True)
    say(f"matrix: logs under {work}")  # only once the folder exists: a refused matrix makes none
    done: dict = {}
    ktap_out = matrix_outputs.KtapOutput(args.ktap, len(targets), owed, work) if args.ktap else None
    with children.signals_raise(KeyboardInterrupt, (signal.SIGTERM,)):  # SIGTERM stops as Ctrl-C
        try:
            kernels = run_all(
                targets,
                request,
                work,
                len(targets) if engine else min(args.jobs, len(targets)),
                say,
                done,
                ktap_out.kernel if ktap_out else None,
                engine.runner(request, work, say) if engine else None,
            )
            if ktap_out:
                ktap_out.finish()
                ktap_out = None
        except KeyboardInterrupt:
            kept = Matrix([done[t.label] for t in targets if t.label in done], complete=False)
            written, problems, _ = matrix_outputs.write(kept, args, work, output, _say, interrupted=True)
            finished = [k.label for k in kept.kernels if k.complete]
            partial = [f"{k.label} ({len(k.results)})" for k in kept.kernels if not k.complete]
            stopped = [t.label for t in targets if t.label not in finished]
            _say(
                f"matrix: interrupted; {len(finished)} finished kernel(s)"
                f"{' and the verdicts so far of ' + ', '.join(partial) if partial else ''} written (marked incomplete) "
                f"to {', '.join(written) or 'nothing'}; stopped: {', '.join(stopped) or 'none'}"
                f"{'; ' + '; '.join(problems) if problems else ''}"
            )
            return Exit.INTERRUPTED
        finally:
            if ktap_out:  # not finished: FILE stays as it was
                ktap_out.discard()
    m = Matrix(kernels)
    written, unwritten, full = matrix_outputs.write(m, args, work, output, _say)
    if args.html and str(args.html) in written:
        say(f"{output.kind}: HTML report {os.path.abspath(args.html)}")
    out = sys.stderr if "-" in (args.ktap, args.json) else sys.stdout  # stdout carries KTAP or JSON
    status = output.show(m, out, time.monotonic() - started)
    if unwritten:
        _say(f"{output.kind}: " + "; ".join(unwritten))
        return Exit.NO_SPACE if full else Exit.SETUP
    return status


def _selftests(say, request: RunRequest) -> None:
    """The mm selftests built (or found in the kernel cache) from --kselftest-from or the default tree; a
    KbuildError says why not. A recipe's own tree builds them in its kernel's run."""
    from uffdprobe.kbuild.errors import KbuildError

    try:
        selftests.binaries(request.workload.kselftest, request.workload.kselftest_from, progress=say)
    except KbuildError as exc:
        raise exc.context("--kselftest") from None
