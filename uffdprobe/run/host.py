"""Run a plan of scenarios under the supervisor on the running kernel, streaming and reporting each verdict."""
import argparse
import errno
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from uffdprobe.osutil import outputs, swap
from uffdprobe.uffd import features
from uffdprobe.results import report
from uffdprobe.results.expect import check, declared, expected_failure, failing, judge
from uffdprobe.supervise import kselftest, splat, supervisor
from uffdprobe.exitcodes import Exit, UsageError
from . import selftests
from uffdprobe.scenarios import memkinds
from uffdprobe.scenarios.registry import select, skip_reason
from uffdprobe.verdicts import Result, Verdict

if TYPE_CHECKING:
    from uffdprobe.results.ktap import KernelTest


def repeat(plan: list, runs: int) -> list:
    """The plan `runs` times over; with more than one run each item's params gain its 1-based 'run'."""
    if runs <= 1:
        return plan
    return [(s, mem, {**params, "run": i}, skip) for i in range(1, runs + 1) for s, mem, params, skip in plan]


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


def run_on_host(args: argparse.Namespace) -> int:
    """`uffdprobe run` on the running kernel: probe, run the plan, write the outputs, choose the exit status."""
    params = _params(args.param)
    said = swap.enable_guest_swap()  # in a guest uffdprobe booted: its swap disk, before the plan probes swap
    if said:
        print(said, file=table_stream(args), flush=True)
    said = memkinds.reserve_guest_hugepages()  # likewise its huge pages, when a hugetlb cell is planned
    if said:
        print(said, file=table_stream(args), flush=True)
    kf = features.probe()
    if getattr(args, "scratch_fs", None) == "none":  # the word only turns off a guest's default
        args.scratch_fs = None
    workload = getattr(args, "exec", None) is not None or getattr(args, "scratch_fs", None)
    if not workload and not args.odirect_target and not _needs_odirect(args.scenarios):
        results, lost = _run_plan(args, kf, None, params)  # no scratch probe (blkid) for scenarios without it
    else:
        from uffdprobe.uffd import odirect
        from .exec_row import scratch
        try:  # --scratch-fs: the O_DIRECT scenarios write to the mounted scratch filesystem too
            with scratch(args) as scratch_dir, \
                    odirect.target(scratch_dir if getattr(args, "scratch_fs", None) else args.odirect_target) as target:
                if args.odirect_target and target is None:  # NotScratch before anything is written
                    raise UsageError(f"--odirect-target {args.odirect_target}: O_DIRECT writes fail there; "
                                     "pass a block device or a directory on ext4/xfs")
                results, lost = _run_plan(args, kf, target, params, scratch_dir)
        except odirect.NotScratch as exc:
            raise UsageError(str(exc)) from None
    table = table_stream(args)
    status = finish(results, args, table)
    if kf.uffd_errno in (errno.EPERM, errno.EACCES):
        print(f"uffdprobe: no userfaultfd permission, every scenario that needs it skipped: {kf.uffd_error}",
              file=sys.stderr)
        return Exit.NO_UFFD_PERMISSION
    if lost:
        return Exit.NO_SPACE if lost.errno in (errno.ENOSPC, errno.EDQUOT) else Exit.CHANNEL_LOST
    return status


def _needs_odirect(names: List[str]) -> bool:
    """Whether a chosen scenario writes through O_DIRECT (an unknown name: True, so _plan names it)."""
    try:
        return any("odirect" in s.needs for s in select(names))
    except KeyError:
        return True


def _run_plan(args: argparse.Namespace, kf: features.KernelFeatures, target: Optional[str],
              params: Dict[str, object], scratch_dir: Optional[str] = None) -> Tuple[List[Result], Optional[OSError]]:
    """Run the --exec program (if any), then the plan, under the supervisor, printing and streaming each
    result as it lands; the results and the error that lost the stream, if any."""
    from . import exec_row
    exec_only = getattr(args, "exec", None) is not None and not args.scenarios  # --exec alone: no built-ins
    plan = [] if exec_only else repeat(_plan(args.scenarios, args.memory, params, kf, target), getattr(args, "runs", 1))
    rows = [] if getattr(args, "exec", None) is None else exec_row.planned(args.exec_row, getattr(args, "runs", 1))
    limits = supervisor.Limits(hang_s=args.hang_timeout, scenario_s=args.scenario_timeout)
    table = table_stream(args)
    stream = VerdictStream(args.results_dir) if args.results_dir else None
    wanted = getattr(args, "kselftest", [])
    bin_dir = selftests.binaries(args) if wanted else None  # built (or found) before the first scenario
    print(f"kernel {kf.kernel['release']}: {len(rows) + len(plan)} runs"
          + (f", selftests {', '.join(wanted)}" if wanted else ""), file=table, flush=True)
    ktap_out = ktap_start(args, rows + [(s.name, mem, params.get("run")) for s, mem, params, _ in plan]
                          + selftests.owed(wanted), "host", ["the running kernel"])

    def on_result(r: Result) -> None:
        print(report.table_line(r), file=table, flush=True)
        if ktap_out:
            ktap_out.add(r)
        if stream:
            stream.append(r)

    with splat.SplatWatch() as splats:  # the kernel log around every workload: WARN/OOPS verdicts
        results = exec_row.run_rows(args, kf.kernel, scratch_dir, on_result, splats)
        results += supervisor.run_many(plan, kf.kernel, limits, target, on_result, splats)
        for item in wanted:  # after the scenarios, in the same boot; output files beside the verdicts
            results += kselftest.run(item, bin_dir, Path(args.results_dir) if args.results_dir else None,
                                     kf.kernel, on_result, splats)
        between = splats.between_row(kf.kernel)  # a splat outside every workload: the boot's row
    if between is not None:
        on_result(between)
        results.append(between)
    if ktap_out:
        ktap_out.close()
    return results, stream.error if stream else None


def ktap_start(args: argparse.Namespace, plan: list, name: str, about: List[str]) -> Optional["KernelTest"]:
    """With --ktap, KTAP on stdout from now on, one result line as each verdict lands; else None
    (results.ktap.KernelTest, imported only then)."""
    if not args.ktap:
        return None
    from uffdprobe.results import ktap
    writer = ktap.Writer(sys.stdout, 1, [f"uffdprobe {report.tool_version()}: {' '.join(sys.argv)}"])
    return writer.kernel(name, plan, about)


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


def table_stream(args: argparse.Namespace):
    """Where the verdict table goes: stderr when stdout carries KTAP or the JSON (`--json -`)."""
    return sys.stderr if args.ktap or args.json == "-" else sys.stdout


def finish(results: List[Result], args: argparse.Namespace, table) -> int:
    """Write --json (whole or not at all; `-` is stdout), print the summary, and choose the exit status
    (KTAP was streamed as results came)."""
    if args.json:
        data = json.dumps(report.results_document(results), indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(data)
            sys.stdout.flush()
        else:
            outputs.write(args.json, data.encode())  # an OSError names args.json, not a temporary file
    from . import kcidb_out
    kcidb_out.write(results, args, getattr(args, "boot_facts", None))
    print(f"summary: {report.summary(results)}", file=table, flush=True)
    expect = getattr(args, "expectations", None) or {}
    declared_bad = [f"{r.scenario}[{r.memory}] {r.verdict.value}" for r in results
                    if expected_failure(declared(expect, r.scenario, r.memory), judge(
                        declared(expect, r.scenario, r.memory), r.verdict), [r.verdict])]
    if declared_bad:
        print(f"declared, so expected: {', '.join(declared_bad)}", file=table, flush=True)
    for line in check(expect, results):
        print(line, file=table, flush=True)
    return exit_status(results, expect)


def exit_status(results: List[Result], expect: Optional[Dict[str, str]] = None) -> int:
    """The one rule (results.expect): 0 when every verdict is PASS, SKIP or a declared bad one that
    happened; else 1 for a HANG/LEAK/WP_LOST, 7 for a declared bad verdict that is gone (FIXED), 2."""
    marks = [(r, judge(declared(expect or {}, r.scenario, r.memory), r.verdict)) for r in results]
    bad = [(r, mark) for r, mark in marks if failing(mark)]
    if any(r.verdict.is_kernel_problem for r, _ in bad):
        return Exit.KERNEL_PROBLEM
    if any(r.verdict not in (Verdict.PASS, Verdict.SKIP) for r, _ in bad):
        return Exit.SETUP
    # over several runs: a 'HANG>=K/N' that N runs never showed (FIXED), or showed fewer than K times
    return Exit.UNEXPECTED if bad or check(expect or {}, results) else Exit.OK
