# SPDX-License-Identifier: GPL-2.0-only
"""One bisection step on the checked-out commit: build incrementally, boot N times, decide 0/1/125.

git bisect run reads 0 as good, 1 as bad, 125 as skip and aborts on 128 or more; so a step
catches everything: a build, boot or harness failure is 125 (with the reason logged), and only
Ctrl-C (SIGINT) becomes 130, which stops the bisection on purpose.
"""

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from . import build as bisect_build, git as bisect_git
from .log import BisectLog
from uffdprobe.osutil import children
from uffdprobe.kbuild.errors import BuildFailed, ConfigDropped, KbuildError
from uffdprobe.verdicts import KERNEL_PROBLEMS, Verdict

GOOD, BAD, SKIP, STOP = 0, 1, 125, 130
DEFAULT_BAD = tuple(sorted(KERNEL_PROBLEMS))
BAD_IF = ("any", "majority", "all")


@dataclass
class StepSpec:
    """Everything a step needs; the same for every step of one bisection."""

    tree: Path
    work: Path
    scenario: str
    memory: List[str] = field(default_factory=list)
    runs: int = 1
    bad_if: str = "any"
    bad_verdicts: tuple = DEFAULT_BAD
    base: str = "tinyconfig"
    fragments: tuple = ()
    vm_timeout: float = 300.0
    hang_timeout: float = 2.0
    scenario_timeout: float = 120.0
    jobs: int = 0
    role: str = "bisect"
    progress: bool = True
    find_fix: bool = False  #: bisect to the fix: git's old term is "broken" (bad), its new term "fixed" (good)


@dataclass
class RunOutcome:
    """One boot: 'good', 'bad' or 'unclear', the verdicts seen, and why."""

    kind: str
    verdicts: dict
    reason: str
    boot_outcome: str
    seconds: float
    console_log: str = ""

    @property
    def summary(self) -> str:
        shown = ",".join(f"{m}={v}" for m, v in self.verdicts.items())
        return shown or self.boot_outcome


def exit_for_git(code: int, find_fix: bool) -> int:
    """A step's decision as `git bisect run` reads it: 0 marks the old term, 1 the new one. To the culprit
    good is old and bad new; to the fix (--find-fix) the defect (bad) is old and its absence (good) new."""
    if find_fix and code in (GOOD, BAD):
        return BAD if code == GOOD else GOOD
    return code


class _Terminated(Exception):
    """SIGTERM or SIGHUP reached the step: an infrastructure event, so the commit is skipped."""


def decide(runs: List[RunOutcome], planned: int, bad_if: str) -> tuple:
    """(exit code, reason) from the runs so far; code None while the remaining runs could change it."""
    bad = sum(r.kind == "bad" for r in runs)
    good = sum(r.kind == "good" for r in runs)
    unclear = len(runs) - bad - good
    if bad_if == "any" and bad:
        return BAD, f"{bad}/{len(runs)} run(s) bad"
    if bad_if == "all" and good:
        return GOOD, f"{good}/{len(runs)} run(s) good (bad needs every run bad)"
    if len(runs) < planned:
        return None, ""
    if unclear * 3 > planned:
        reasons = "; ".join(r.reason for r in runs if r.kind == "unclear")
        return SKIP, f"{unclear}/{planned} run(s) inconclusive: {reasons}"[:400]
    if bad_if == "majority" and bad * 2 <= bad + good:
        return GOOD, f"{bad}/{bad + good} conclusive run(s) bad: no majority"
    if bad_if == "any":
        return GOOD, f"{good}/{planned} run(s) good"
    return BAD, f"{bad}/{bad + good} conclusive run(s) bad ({bad_if})"


def classify(boot, results, scenario: str, bad_verdicts: tuple) -> RunOutcome:
    """Turn one BootResult and its verdicts into a RunOutcome."""
    mine = [r for r in results if r.scenario == scenario]
    verdicts = {r.memory: r.verdict.value for r in mine}
    seconds = float(boot.timings.get("total") or 0.0)
    common = dict(verdicts=verdicts, boot_outcome=boot.outcome, seconds=seconds, console_log=str(boot.console_log))
    if boot.outcome != "OK" and boot.outcome in bad_verdicts:
        return RunOutcome("bad", reason=f"{boot.outcome}: {boot.reason}", **common)
    hits = [f"{m}={v}" for m, v in verdicts.items() if v in bad_verdicts]
    if hits:
        return RunOutcome("bad", reason=" ".join(hits), **common)
    if boot.outcome != "OK":
        return RunOutcome("unclear", reason=f"{boot.outcome}: {boot.reason}", **common)
    if not mine:
        return RunOutcome("unclear", reason=f"no verdict from the guest (guest exit {boot.exit_status})", **common)
    others = [f"{m}={v}" for m, v in verdicts.items() if v != Verdict.PASS.value]
    if others:
        return RunOutcome("unclear", reason="not PASS: " + " ".join(others), **common)
    return RunOutcome("good", reason="PASS", **common)


def boot_once(spec: StepSpec, bzimage: Path, index: int) -> RunOutcome:
    """Boot the step's kernel once and run the scenario in it."""
    from uffdprobe.run import guest as guest_run
    from uffdprobe.results import report
    from uffdprobe.vm.boot import boot
    from uffdprobe.run.request import Limits, RunRequest, Workload
    from uffdprobe.scenarios import sources

    request = RunRequest(
        Workload(scenarios=(spec.scenario,), memory=tuple(spec.memory or ()), scenarios_from=tuple(sources.files())),
        Limits(hang_timeout=spec.hang_timeout, scenario_timeout=spec.scenario_timeout),
    )
    note = (
        (lambda text: print(f"bisect-step [run {index}/{spec.runs}] {text}", file=sys.stderr, flush=True))
        if spec.progress
        else None
    )
    result = boot(str(bzimage), guest_run.guest_argv(request), timeout=spec.vm_timeout, progress=note)
    stream = result.results_dir / "verdicts.jsonl"
    return classify(result, report.read_jsonl(stream) if stream.exists() else [], spec.scenario, spec.bad_verdicts)


def run_step(spec: StepSpec, standalone: bool = True) -> int:
    """Build, boot and decide for HEAD; log the step; return 0, 1 or 125 (130 on Ctrl-C).

    standalone (a process of its own under git bisect run): SIGTERM/SIGHUP skip the commit;
    in-process (the driver's endpoint checks) they stop the bisection like Ctrl-C.
    """
    started = time.monotonic()
    log = BisectLog(spec.work)
    record = {
        "role": spec.role,
        "commit": "?",
        "subject": "",
        "build_s": None,
        "compiled": 0,
        "boot_s": None,
        "runs": [],
        "reason": "",
    }
    trap = children.signals_raise(_Terminated) if standalone else contextlib.nullcontext()
    with trap:  # standalone: SIGTERM/SIGHUP skip the commit
        try:
            record["commit"] = bisect_git.head(spec.tree)
            record["subject"] = bisect_git.subject(spec.tree, record["commit"])
            _say(spec, f"{record['commit'][:12]} {record['subject']}: building")
            code, reason = _build_boot_decide(spec, record)
        except KeyboardInterrupt:
            code, reason = STOP, "interrupted (Ctrl-C): the bisection stops"
        except _Terminated as exc:
            code, reason = SKIP, f"terminated by {exc}"
        except BaseException as exc:  # anything else is an infrastructure problem: skip, never abort
            if not standalone and _is_termination(exc):
                code, reason = STOP, f"stopped by {exc}"
            else:
                code = SKIP
                reason = f"infrastructure error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
                record["traceback"] = traceback.format_exc()[-2000:]
    record.update(
        code=code,
        decision={GOOD: "good", BAD: "bad", SKIP: "skip"}.get(code, "stop"),
        reason=reason,
        step_s=round(time.monotonic() - started, 2),
    )
    try:
        log.event("step", **record)
    except OSError as exc:
        print(f"bisect-step: cannot write the bisect log: {exc}", file=sys.stderr)
    _say(spec, f"{record['commit'][:12]} -> {record['decision']} (exit {code}): {reason}")
    return code


def _build_boot_decide(spec: StepSpec, record: dict) -> tuple:
    build_started = time.monotonic()
    try:
        built = bisect_build.build_step(
            spec.tree,
            spec.work,
            spec.base,
            list(spec.fragments),
            label=f"bisect-{record['commit'][:12]}",
            jobs=spec.jobs,
            progress=spec.progress,
        )
    except (BuildFailed, ConfigDropped) as exc:
        log_path = str(getattr(exc, "log", "") or "")
        record.update(
            build_s=round(time.monotonic() - build_started, 2),
            build_log=log_path,
            compiled=bisect_build.compiled_in(log_path) if log_path else 0,
        )
        text = str(exc)
        return SKIP, (text if text.startswith("build failed") else f"build failed: {text}")[:400]
    except KbuildError as exc:
        record["build_s"] = round(time.monotonic() - build_started, 2)
        return SKIP, f"build could not run: {exc}"[:400]
    record.update(
        build_s=round(built.seconds, 2), compiled=built.compiled, bzimage_sha256=built.sha256, build_log=str(built.log)
    )
    runs: List[RunOutcome] = []
    boot_started = time.monotonic()
    code, reason = None, ""
    while code is None:
        runs.append(boot_once(spec, built.bzimage, len(runs) + 1))
        record["runs"].append({**runs[-1].__dict__, "summary": runs[-1].summary})
        code, reason = decide(runs, spec.runs, spec.bad_if)
    record["boot_s"] = round(time.monotonic() - boot_started, 2)
    return code, reason


def _say(spec: StepSpec, text: str) -> None:
    if spec.progress:
        print(f"bisect-step [{spec.role}]: {text}", file=sys.stderr, flush=True)


def _is_termination(exc: BaseException) -> bool:
    """The VM runner's (or the driver's) signal exception, which in-process means "stop"."""
    return type(exc).__name__ in ("Terminated", "Interrupted")
