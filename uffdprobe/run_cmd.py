"""`uffdprobe list` and `uffdprobe run`: the scenarios on the running kernel, or on one booted in QEMU."""
import argparse
import errno
import json
import os
import sys
from typing import Dict, List, Optional, Tuple

from . import features, odirect, report, supervisor
from .exitcodes import Exit
from .scenarios.registry import SCENARIOS, select, skip_reason
from .scenarios.memkinds import KINDS
from .verdicts import Result, Verdict


class UsageError(Exception):
    """Bad input the user can fix: printed as one line, exit 2."""


def add_parsers(sub) -> None:
    p = sub.add_parser("list", help="the scenarios, the question each asks, what each needs")
    p.add_argument("--all", action="store_true", help="include harness self-test scenarios")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("run", help="run scenarios on the running kernel (or --kernel in QEMU)")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: every public scenario")
    p.add_argument("--memory", action="append", choices=KINDS, help="memory kinds (default: all each supports)")
    p.add_argument("--json", metavar="FILE", help="write all results as a JSON list")
    p.add_argument("--ktap", action="store_true", help="print KTAP on stdout (the table goes to stderr)")
    p.add_argument("--results-dir", metavar="DIR", default=os.environ.get("UFFDPROBE_RESULTS"),
                   help="stream each result as a line of DIR/verdicts.jsonl (default: $UFFDPROBE_RESULTS)")
    p.add_argument("--odirect-target", metavar="PATH", help="block device or directory that accepts O_DIRECT")
    p.add_argument("--hang-timeout", type=_seconds, default=2.0, metavar="S",
                   help="blocked this long on a uffd fault means HANG (default 2)")
    p.add_argument("--scenario-timeout", type=_seconds, default=120.0, metavar="S")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario parameter (JSON value), e.g. data_pages=128")
    p.add_argument("--runs", type=runs_count, default=1, metavar="N",
                   help="repeat the whole plan N times; each result carries params['run'] (default 1)")
    p.add_argument("--kernel", metavar="KERNEL",
                   help="boot this kernel in QEMU and run there: bzImage/vmlinuz, linux-image .deb or recipe name")
    p.add_argument("--accel", choices=("kvm", "tcg"), help="force QEMU acceleration (default: probe KVM)")
    p.add_argument("--append", action="append", default=[], metavar="ARG", type=kernel_arg,
                   help="with --kernel: an extra kernel command-line argument, e.g. transparent_hugepage=never")
    p.add_argument("--vm-timeout", type=_seconds, default=900.0, metavar="S",
                   help="overall limit for the boot and every scenario in it (default 900)")
    p.set_defaults(func=cmd_run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 and at most 3600 seconds")
    return value


def kernel_arg(text: str) -> str:
    """argparse type for --append: one kernel argument that leaves the harness's own ones alone."""
    if not text or text.split() != [text] or text.startswith(("uffdprobe.", "init=", "rdinit=", "root=")):
        raise argparse.ArgumentTypeError(f"{text!r}: give one kernel argument without spaces; uffdprobe.*, "
                                         "init=, rdinit= and root= are the harness's own")
    return text


def runs_count(text: str) -> int:
    """argparse type for --runs: a whole number from 1 to 100."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} must be from 1 to 100")
    return value


def repeat(plan: list, runs: int) -> list:
    """The plan `runs` times over; with more than one run each item's params gain its 1-based 'run'."""
    if runs <= 1:
        return plan
    return [(s, mem, {**params, "run": i}, skip) for i in range(1, runs + 1) for s, mem, params, skip in plan]


def cmd_list(args: argparse.Namespace) -> int:
    for s in select([], include_test_only=args.all):
        print(f"{s.name}\n  question: {s.question}\n  needs: {', '.join(s.needs) or 'nothing'}; memory: {', '.join(s.memory)}")
        if s.models:
            print(f"  models: {s.models}")
        if s.defaults:
            print(f"  parameters: {json.dumps(s.defaults)}")
    return Exit.OK


def _params(pairs: List[str]) -> Dict[str, object]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: write KEY=VALUE, e.g. --param data_pages=128")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _plan(names: List[str], memories: Optional[List[str]], params: Dict[str, object],
          kf: features.KernelFeatures, target: Optional[str]) -> list:
    try:
        chosen = select(names)
    except KeyError as exc:
        raise UsageError(f"unknown scenario {exc.args[0]}; `uffdprobe list` shows them") from None
    unknown = [k for k in params if not any(k in s.defaults for s in chosen)]
    if unknown:
        raise UsageError(f"no chosen scenario has a parameter {', '.join(unknown)}; `uffdprobe list --all` "
                         "shows them")
    plan = []
    for s in chosen:
        merged = {**s.defaults, **{k: v for k, v in params.items() if k in s.defaults}}
        for key, value in merged.items():
            default = s.defaults[key]
            if isinstance(default, int) and not isinstance(default, bool) and \
                    (not isinstance(value, int) or value <= 0 or value > 1 << 20):
                raise UsageError(f"{s.name}: {key}={value!r} must be a whole number from 1 to {1 << 20}")
        for mem in s.memory:
            if memories and mem not in memories:
                continue
            plan.append((s, mem, merged, skip_reason(s, mem, kf, target)))
    return plan


def check_writable(*paths: Optional[str]) -> None:
    """Refuse, before any work and without creating anything, an output file that cannot be written:
    no result is lost at the end."""
    for path in filter(None, paths):
        where = path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.access(where, os.W_OK):
            raise UsageError(f"cannot write {path}; choose a writable file path")


def cmd_run(args: argparse.Namespace) -> int:
    check_writable(args.json)
    if args.append and not args.kernel:
        raise UsageError("--append changes a booted kernel's command line: add --kernel KERNEL")
    if args.kernel:
        from .guest_run import run_in_vm
        return run_in_vm(args)
    params = _params(args.param)
    kf = features.probe()
    with odirect.target(args.odirect_target) as target:
        if args.odirect_target and target is None:
            raise UsageError(f"--odirect-target {args.odirect_target}: O_DIRECT writes fail there; "
                             "pass a block device or a directory on ext4/xfs")
        results, lost = _run_plan(args, kf, target, params)
    table = sys.stderr if args.ktap else sys.stdout
    status = finish(results, args, table)
    if kf.uffd_errno in (errno.EPERM, errno.EACCES):
        print(f"uffdprobe: no userfaultfd permission, every scenario that needs it skipped: {kf.uffd_error}",
              file=sys.stderr)
        return Exit.NO_UFFD_PERMISSION
    if lost:
        return Exit.NO_SPACE if lost.errno in (errno.ENOSPC, errno.EDQUOT) else Exit.CHANNEL_LOST
    return status


def _run_plan(args: argparse.Namespace, kf: features.KernelFeatures, target: Optional[str],
              params: Dict[str, object]) -> Tuple[List[Result], Optional[OSError]]:
    """Run the plan under the supervisor, printing and streaming each result as it lands; the results
    and the error that lost the stream, if any."""
    plan = repeat(_plan(args.scenarios, args.memory, params, kf, target), getattr(args, "runs", 1))
    limits = supervisor.Limits(hang_s=args.hang_timeout, scenario_s=args.scenario_timeout)
    table = sys.stderr if args.ktap else sys.stdout
    stream = VerdictStream(args.results_dir) if args.results_dir else None
    print(f"kernel {kf.kernel['release']}: {len(plan)} runs", file=table, flush=True)

    def on_result(r: Result) -> None:
        print(report.table_line(r), file=table, flush=True)
        if stream:
            stream.append(r)

    results = supervisor.run_many(plan, kf.kernel, limits, target, on_result)
    return results, stream.error if stream else None


class VerdictStream:
    """DIR/verdicts.jsonl, opened anew for every verdict: a results channel that goes away (unmounted,
    disk full) is noticed at the next verdict, said once, and the run goes on with the table alone."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "verdicts.jsonl")
        self.error: Optional[OSError] = None

    def append(self, r: Result) -> None:
        if self.error:
            return
        try:
            with open(self.path, "a") as f:
                report.append_jsonl(f, r)
        except OSError as exc:
            self.error = exc
            print(f"uffdprobe: results channel lost: {self.path}: {exc.strerror}; later verdicts are only "
                  "printed here", file=sys.stderr, flush=True)


def finish(results: List[Result], args: argparse.Namespace, table) -> int:
    """Write --json and --ktap, print the summary, and choose the exit status."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in results], f, indent=2, default=str)
    if args.ktap:
        print(report.ktap(results), flush=True)
    print(f"summary: {report.summary(results)}", file=table, flush=True)
    return exit_status(results)


def exit_status(results: List[Result]) -> int:
    if any(r.verdict.is_kernel_problem for r in results):
        return Exit.KERNEL_PROBLEM
    if any(r.verdict not in (Verdict.PASS, Verdict.SKIP) for r in results):
        return Exit.SETUP
    return Exit.OK
