"""`uffdprobe matrix`: every scenario on every kernel, one boot each, as a table, JSON, JUnit and HTML."""
import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

from uffdprobe.results import html as html_report, junit, table as matrix_table
from uffdprobe.exitcodes import Exit
from uffdprobe.results.matrix import Matrix
from uffdprobe.run.matrix import Options, build, check_kernels, planned, run_all
from uffdprobe.kbuild.errors import BadInput
from uffdprobe.kbuild.recipes import VERDICTS, check_expect
from uffdprobe.exitcodes import UsageError
from .run import _seconds, check_writable, runs_count
from uffdprobe.scenarios.memkinds import KINDS
from .vocab import add_accel, add_verbosity, deprecated


def add_parser(sub) -> None:
    p = sub.add_parser("matrix", help="every scenario on every kernel, side by side (one boot per kernel)")
    p.add_argument("--kernel", action="append", required=True, metavar="K",
                   help="repeatable: 'host' (the running kernel), a recipe name or .toml path, a "
                        "bzImage/vmlinuz or a linux-image .deb, optionally LABEL=K")
    p.add_argument("--scenario", action="append", default=[], metavar="S", help="repeatable (default: all public)")
    p.add_argument("--memory", action="append", choices=KINDS, help="memory kinds (default: all each supports)")
    p.add_argument("--runs", type=runs_count, default=1, metavar="N",
                   help="repeat every scenario N times in the same boot; disagreeing runs make a FLAKY cell")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="scenario parameter passed to every kernel's run")
    p.add_argument("--expect", action="append", default=[], metavar="[KERNEL:]SCENARIO=VERDICT",
                   help="declare an expected verdict (overrides the recipe's), e.g. host:wp-real-write=PASS")
    p.add_argument("--json", metavar="FILE", help="write the matrix (kernels, cells, every result) as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: a testcase per kernel × scenario × memory")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page (evidence on click)")
    p.add_argument("--parallel", dest="jobs", type=runs_count, default=1, metavar="J",
                   help="kernels run at once (default 1: one TCG guest already uses both cores)")
    p.add_argument("--jobs", dest="jobs", type=runs_count, action=deprecated("--parallel"),
                   help=argparse.SUPPRESS)  # --jobs is make -j in kernel build and bisect
    p.add_argument("--results-dir", metavar="DIR", help="per-kernel logs and results (default: a new temp dir)")
    add_accel(p)
    p.add_argument("--vm-timeout", type=_seconds, default=900.0, metavar="S",
                   help="limit for each kernel's boot and every scenario in it (default 900)")
    add_verbosity(p)
    p.set_defaults(func=cmd_matrix)


def parse_expect(items: List[str], labels: List[str]) -> Dict[str, Dict[str, str]]:
    """--expect values as {kernel label or '*': {scenario: verdict}}; bad ones raise UsageError."""
    out: Dict[str, Dict[str, str]] = {}
    for item in items:
        left, sep, verdict = item.rpartition("=")
        kernel, colon, scenario = left.rpartition(":")
        kernel = kernel if colon else "*"
        if not sep or not scenario or verdict not in VERDICTS:
            raise UsageError(f"--expect {item!r}: write [KERNEL:]SCENARIO=VERDICT with VERDICT one of "
                             + ", ".join(sorted(VERDICTS)))
        if kernel != "*" and kernel not in labels:
            raise UsageError(f"--expect {item!r}: {kernel} is not one of the --kernel values")
        try:
            check_expect({scenario: verdict}, f"--expect {item!r}")
        except BadInput as exc:
            raise UsageError(str(exc)) from None
        out.setdefault(kernel, {})[scenario] = verdict
    return out


_SAY_LOCK = threading.Lock()


def _say(text: str) -> None:
    """A progress line on stderr, whole even when kernels run in parallel."""
    with _SAY_LOCK:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _silent(text: str) -> None:
    """-q: progress lines are dropped (the table, the summary and errors still print)."""


def cmd_matrix(args: argparse.Namespace) -> int:
    check_writable(args.json, args.junit, args.html)
    targets = check_kernels(args.kernel)  # every kernel resolved and checked before any build or boot
    overrides = parse_expect(args.expect, args.kernel + [t.label for t in targets])
    opts = Options(scenarios=args.scenario, memory=args.memory or [], runs=args.runs, params=args.param,
                   vm_timeout=args.vm_timeout, accel=args.accel, verbose=args.verbosity > 0)
    say = _say if args.verbosity >= 0 else _silent
    owed = planned(opts)
    for t in targets:
        t.expect.update(overrides.get("*", {}))
        t.expect.update(overrides.get(t.arg, {}))
        t.expect.update(overrides.get(t.label, {}))
    work = Path(args.results_dir) if args.results_dir else Path(tempfile.mkdtemp(prefix="uffdprobe-matrix-"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"matrix: {len(targets)} kernel(s) × {len(owed)} run(s) each; logs under {work}")
    for t in targets:
        build(t, say)
    done: dict = {}
    started = time.monotonic()
    old = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        kernels = run_all(targets, opts, work, min(args.jobs, len(targets)), say, done)
    except KeyboardInterrupt:
        kept = Matrix([done[t.label] for t in targets if t.label in done])
        _write(kept, args, work, quiet=True)
        where = ", ".join(filter(None, [args.json, args.junit, args.html, str(work / "matrix.json")]))
        _say(f"matrix: interrupted; {len(kept.kernels)} finished kernel(s) written to {where}; "
             f"stopped: {', '.join(t.label for t in targets if t.label not in done) or 'none'}")
        return Exit.INTERRUPTED
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    m = Matrix(kernels)
    _write(m, args, work)
    print(matrix_table.render(m, colour=sys.stdout.isatty()), flush=True)
    print(matrix_table.LEGEND)
    problems = matrix_table.unexpected_lines(m)
    for line in problems:
        print(line)
    print(f"matrix: {len(m.cells())} cell(s) on {len(kernels)} kernel(s) in {time.monotonic() - started:.1f}s, "
          f"{len(problems)} unexpected", flush=True)
    return Exit.UNEXPECTED if problems else Exit.OK


def _write(m: Matrix, args: argparse.Namespace, work: Path, quiet: bool = False) -> None:
    """Write every requested output, plus matrix.json in the work dir (always); `quiet`: no progress line."""
    data = json.dumps(m.to_dict(), indent=1, default=str)
    (work / "matrix.json").write_text(data)
    if args.json:
        Path(args.json).write_text(data)
    if args.junit:
        Path(args.junit).write_text(junit.to_xml(m))
    if args.html:
        Path(args.html).write_text(html_report.render(m))
        if not quiet:
            _say(f"matrix: HTML report {os.path.abspath(args.html)}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()

