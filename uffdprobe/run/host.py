# SPDX-License-Identifier: GPL-2.0-only
"""Run a plan of scenarios under the supervisor on the running kernel, streaming and reporting each verdict."""

import errno
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import uffdprobe
from uffdprobe.osutil import outputs, swap
from uffdprobe.uffd import features
from uffdprobe.results import report
from uffdprobe.results.expect import check, declared, expected_failure, failing, judge
from uffdprobe.supervise import kselftest, splat, supervisor
from uffdprobe.exitcodes import Exit, UsageError
from . import plan, selftests
from .child_report import Reporter
from .request import Outputs, RunRequest
from uffdprobe.scenarios import memkinds
from uffdprobe.verdicts import Result, Verdict

if TYPE_CHECKING:
    from uffdprobe.results.ktap import KernelTest


def run_on_host(request: RunRequest, reporter: Optional[Reporter] = None) -> int:
    """`uffdprobe run` on the running kernel: probe, run the plan, write the outputs, choose the exit status
    (an error said also goes to `reporter`, the run's run.json)."""
    reporter = reporter or Reporter(None)
    owed = plan.owed(request)  # bad scenario names and parameters refused before anything runs
    table = table_stream(request.outputs)
    said = swap.enable_guest_swap()  # in a guest uffdprobe booted: its swap disk, before the plan probes swap
    if said:
        print(said, file=table, flush=True)
    said = memkinds.reserve_guest_hugepages()  # likewise its huge pages, when a hugetlb cell is planned
    if said:
        print(said, file=table, flush=True)
    kf = features.probe()
    odirect_target = request.machine.odirect_target
    fs = scratch_fs(request)
    if request.workload.exec is None and not fs and not odirect_target and not _needs_odirect(request):
        results, lost = _run_plan(request, owed, kf, None)  # no scratch probe (blkid) for scenarios without it
    else:
        from uffdprobe.uffd import odirect
        from .exec_row import scratch

        try:  # --scratch-fs: the O_DIRECT scenarios write to the mounted scratch filesystem too
            with scratch(request) as scratch_dir, odirect.target(scratch_dir if fs else odirect_target) as target:
                if odirect_target and target is None:  # NotScratch before anything is written
                    raise UsageError(
                        f"--odirect-target {odirect_target}: O_DIRECT writes fail there; "
                        "pass a block device or a directory on ext4/xfs"
                    )
                results, lost = _run_plan(request, owed, kf, target, scratch_dir)
        except odirect.NotScratch as exc:
            raise UsageError(str(exc)) from None
    status = finish(results, request, table)
    if kf.uffd_errno in (errno.EPERM, errno.EACCES):
        reporter.say(f"no userfaultfd permission, every scenario that needs it skipped: {kf.uffd_error}")
        return Exit.NO_UFFD_PERMISSION
    if lost:
        return Exit.NO_SPACE if lost.errno in (errno.ENOSPC, errno.EDQUOT) else Exit.CHANNEL_LOST
    return status


def scratch_fs(request: RunRequest) -> Optional[str]:
    """The filesystem --scratch-fs asks for on this kernel's scratch disk; the word `none` only turns off
    a guest's default, so it is None here."""
    fs = request.machine.scratch_fs
    return None if fs == "none" else fs


def _needs_odirect(request: RunRequest) -> bool:
    """Whether a chosen scenario writes through O_DIRECT."""
    return any("odirect" in s.needs for s in plan.chosen(request))


def _run_plan(
    request: RunRequest,
    owed: List[plan.Row],
    kf: features.KernelFeatures,
    target: Optional[str],
    scratch_dir: Optional[str] = None,
) -> Tuple[List[Result], Optional[OSError]]:
    """Run the --exec program (if any), then the scenarios, then the selftests, under the supervisor,
    printing and streaming each result as it lands; the results and the error that lost the stream, if any."""
    from . import exec_row

    work, outputs = request.workload, request.outputs
    items = plan.supervised(request, kf, target)
    limits = supervisor.Limits(hang_s=request.limits.hang_timeout, scenario_s=request.limits.scenario_timeout)
    table = table_stream(outputs)
    stream = VerdictStream(outputs.results_dir) if outputs.results_dir else None
    wanted = list(work.kselftest)
    # built (or found) before the first scenario
    bin_dir = selftests.binaries(work.kselftest, work.kselftest_from) if wanted else None
    print(
        f"kernel {kf.kernel['release']}: {len(owed) - len(wanted)} runs"
        + (f", selftests {', '.join(wanted)}" if wanted else ""),
        file=table,
        flush=True,
    )
    ktap_out = ktap_start(outputs, owed, "host", ["the running kernel"])

    numbered = report.Numbered(owed)

    def on_result(r: Result) -> None:
        print(numbered.line(r), file=table, flush=True)
        if ktap_out:
            ktap_out.add(r)
        if stream:
            stream.append(r)

    with splat.SplatWatch() as splats:  # the kernel log around every workload: WARN/OOPS verdicts
        results = exec_row.run_rows(request, kf.kernel, scratch_dir, on_result, splats)
        results += supervisor.run_many(items, kf.kernel, limits, target, on_result, splats)
        for item in wanted:  # after the scenarios, in the same boot; output files beside the verdicts
            results += kselftest.run(
                item, bin_dir, Path(outputs.results_dir) if outputs.results_dir else None, kf.kernel, on_result, splats
            )
        between = splats.between_row(kf.kernel)  # a splat outside every workload: the boot's row
    if between is not None:
        on_result(between)
        results.append(between)
    if ktap_out:
        ktap_finish(ktap_out)
    return results, stream.error if stream else None


def ktap_start(outputs: Outputs, plan: list, name: str, about: List[str]) -> "Optional[KernelTest]":
    """With --ktap FILE (- for stdout), KTAP there from now on, one result line as each verdict lands; else None
    (results.ktap.KernelTest, imported only then)."""
    if not outputs.ktap:
        return None
    from uffdprobe.results import ktap

    out = sys.stdout if outputs.ktap == "-" else open(outputs.ktap, "w")  # checked writable up front
    writer = ktap.Writer(out, 1, [f"uffdprobe {uffdprobe.version()}: {' '.join(sys.argv)}"])
    return writer.kernel(name, plan, about)


def ktap_finish(kernel_test: "KernelTest", note: str = "") -> None:
    """End the KTAP the run streamed (ktap_start), and close its FILE (stdout stays open)."""
    kernel_test.close(note)
    if kernel_test.top.out is not sys.stdout:
        kernel_test.top.out.close()


class VerdictStream:
    """DIR/verdicts.jsonl, opened anew for every verdict: a results channel that goes away (unmounted,
    disk full) is noticed at the next verdict, said once, and the run goes on with the table alone."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "verdicts.jsonl")
        self.error: Optional[OSError] = None
        try:  # there before the first row runs: a guest that dies after this had started its plan
            open(self.path, "a").close()
        except OSError as exc:
            self.error = exc

    def append(self, r: Result) -> None:
        if self.error:
            return
        try:
            with open(self.path, "a") as f:
                report.append_jsonl(f, r)
        except OSError as exc:
            self.error = exc
            print(
                f"uffdprobe: results channel lost: {self.path}: {exc.strerror}; later verdicts are only printed here",
                file=sys.stderr,
                flush=True,
            )


def table_stream(outputs: Outputs):
    """Where the verdict table goes: stderr when stdout carries KTAP or the JSON (`--json -`)."""
    return sys.stderr if "-" in (outputs.ktap, outputs.json) else sys.stdout


def finish(results: List[Result], request: RunRequest, table, boot: Optional[dict] = None) -> int:
    """Write --json (whole or not at all; `-` is stdout), print the summary, and choose the exit status
    (KTAP was streamed as results came)."""
    where = request.outputs.json
    if where:
        data = json.dumps(report.results_document(results), indent=2) + "\n"
        if where == "-":
            sys.stdout.write(data)
            sys.stdout.flush()
        else:
            outputs.write(where, data.encode())  # an OSError names the file, not a temporary one
    from . import kcidb_out

    kcidb_out.write(results, request, boot)
    print(f"summary: {report.summary(results)}", file=table, flush=True)
    expect = dict(request.declared)
    declared_bad = [
        f"{r.scenario}[{r.memory}] {r.verdict.value}"
        for r in results
        if expected_failure(
            declared(expect, r.scenario, r.memory),
            judge(declared(expect, r.scenario, r.memory), r.verdict),
            [r.verdict],
        )
    ]
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
