# SPDX-License-Identifier: GPL-2.0-only
"""Fill a matrix: one `uffdprobe run` per kernel (host directly, others in one boot each), J at a time."""

import concurrent.futures
import json
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from uffdprobe.results import report
from uffdprobe.results.matrix import KernelRun
from uffdprobe.verdicts import Result, Verdict
from uffdprobe.osutil import children
from uffdprobe.osutil.files import write_atomic
from . import child_report, plan
from .engine import CellLost, Engine, child_limit, child_request, fresh_folder, kselftests
from .kernels import HOST, Target, build, check_kernels, declare, owner, parse_expect
from .request import RunRequest

__all__ = [
    "HOST",
    "CellLost",
    "Target",
    "Runner",
    "build",
    "check_kernels",
    "child_request",
    "declare",
    "parse_expect",
    "planned",
    "run_all",
]

CONSOLE_EXCERPT_LINES = 40


def planned(request: RunRequest, target: Optional[Target] = None) -> List[plan.Row]:
    """(scenario, memory, run) of every verdict a kernel owes (run.plan.owed); `target`'s recipe may add
    selftests to the matrix's."""
    return plan.owed(request, kselftests(request, target))


class Runner:
    """Runs a matrix's kernels one child each through an engine (default: this machine's), reads every
    child's results back from its own folder, fills what it owes but never said."""

    def __init__(self, request: RunRequest, work: Path, say: Callable[[str], None], engine: Optional[Engine] = None):
        from .engine_local import LocalEngine

        self.request, self.work, self.say = request, work, say
        self.engine: Engine = engine or LocalEngine(say)
        self.folders: Dict[str, Path] = {}  # label -> this run's fresh results folder
        self.stopping = False

    def run_one(self, target: Target, index: str) -> KernelRun:
        """One kernel, start to finish, always ending in a KernelRun with a verdict for every planned run."""
        out = fresh_folder(self.work, target)
        _keep_build_files(target, out)
        self.folders[target.label] = out
        owed = planned(self.request, target)
        if target.build_error:
            return _filled(target, [], owed, Verdict.BUILD_FAIL, target.build_error, {"folder": str(out)})
        if self.stopping:  # interrupted before it started: nothing to report
            run = _filled(target, [], [], Verdict.ERROR, "interrupted before it started", {})
            run.complete = False
            return run
        what = f"booting {target.path}" if target.path else "on the running kernel"
        log = out / "run.log"
        self.say(f"{index} {target.label}: {what} (log: {log})")
        started, started_at = time.monotonic(), time.time()
        try:
            status = self.engine.run_child(target, self.request, out, log)
        except OSError as exc:  # the interpreter cannot be executed (permissions), no processes left, ...
            self.say(f"{index} {target.label}: cannot start uffdprobe run: {exc}")
            return _filled(target, [], owed, Verdict.ERROR, f"cannot start uffdprobe run: {exc}", {})
        except CellLost as exc:
            self.say(f"{index} {target.label}: {exc}")
            return _filled(target, [], owed, Verdict.ERROR, str(exc), {"log": str(log)})
        took = time.monotonic() - started
        results = self._read_back(target, out, index)
        said = child_report.read(out)
        boot = _boot_facts(said)
        boot.update(
            log=str(log), exit_status=status, seconds=round(took, 1), started_at=round(started_at, 3), folder=str(out)
        )
        if (out / "console.log").is_file():  # the child kept it beside its verdicts: the archived copy
            boot["console_log"] = str(out / "console.log")
        if status is None:
            reason = f"uffdprobe run did not finish within {child_limit(self.request):g}s: killed (log: {log})"
        else:
            reason = (
                f"uffdprobe run ended (exit {status}) without this verdict"
                f"{': ' + said.error if said.error else ''} (log: {log})"
            )
        verdict = Verdict(boot["outcome"]) if boot.get("outcome") in Verdict.__members__ else Verdict.ERROR
        if self.stopping:  # stopped: what it produced, no filler; the matrix says it was interrupted
            run = _filled(target, results, [], verdict, reason, boot)
            run.complete = False
            return run
        run = _filled(target, results, owed, verdict, boot.get("reason") or reason, boot)
        self.say(f"{index} {target.label}: done in {took:.1f}s: {report.summary(run.results)}")
        return run

    def _read_back(self, target: Target, out: Path, index: str = "") -> List[Result]:
        """The child's results from its folder, only after checking folder and results are this kernel's."""
        try:
            found = json.loads((out / "kernel.json").read_text())
        except (OSError, ValueError):
            found = None
        if found != owner(target):
            self.say(f"{index} {target.label}: {out} is not this kernel's results folder any more; not read")
            return []
        results = _read_results(out)
        mine = [r for r in results if target.owns(r)]
        if len(mine) < len(results):
            self.say(
                f"{index} {target.label}: {len(results) - len(mine)} result(s) in {out} came from another "
                "kernel; dropped"
            )
        return mine

    def partial(self, target: Target) -> Optional[KernelRun]:
        """An interrupted kernel: the verdicts it streamed so far, marked incomplete (None if it never ran)."""
        out = self.folders.get(target.label)
        if out is None:
            return None
        run = _filled(target, self._read_back(target, out), [], Verdict.ERROR, "", _boot_facts(child_report.read(out)))
        run.complete = False
        return run

    def stop_all(self) -> None:
        """Interrupted: no kernel starts any more, and the engine stops every running child."""
        self.stopping = True
        self.engine.stop_all()


def run_all(
    targets: List[Target],
    request: RunRequest,
    work: Path,
    jobs: int,
    say: Callable[[str], None],
    done: Dict[str, KernelRun],
    on_kernel: Optional[Callable[[KernelRun], None]] = None,
    runner: Optional[Runner] = None,
) -> List[KernelRun]:
    """Every target, `jobs` at a time, in the order given; finished ones land in `done` (and are given to
    `on_kernel`) as they end. `runner` runs each kernel (default: a Runner whose children run on
    this machine; a cluster's comes from run/engine_dask.py).

    A recipe kernel is built (or taken from the cache) here, in this thread, just before it is queued:
    the kernels queued before it run meanwhile, so a fresh machine's first verdicts (the host's, then
    the first recipe's) come while later recipes still build.

    On Ctrl-C (or any error) every child is stopped and reaped before the exception goes on."""
    runner = runner or Runner(request, work, say)
    n = len(targets)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="matrix")
    futures: Dict[concurrent.futures.Future, Target] = {}

    def collect(pending: set, timeout: float) -> set:
        finished, pending = concurrent.futures.wait(pending, timeout=timeout)
        for f in finished:
            done[futures[f].label] = f.result()
            if on_kernel:
                on_kernel(done[futures[f].label])
        return pending

    try:
        pending: set = set()
        for i, t in enumerate(targets, 1):
            build(t, say)
            f = pool.submit(runner.run_one, t, f"[{i}/{n}]")
            futures[f] = t
            pending = collect(pending | {f}, timeout=0)
        while pending:
            pending = collect(pending, timeout=0.5)
    except BaseException:
        with children.signals_ignored((signal.SIGINT, signal.SIGTERM), _still_stopping):
            for f in futures:  # first, so no queued kernel starts while the running ones stop
                f.cancel()
            for f in futures:  # finished before the interrupt, not yet collected: kept
                if f.done() and not f.cancelled() and f.exception() is None:
                    done[futures[f].label] = f.result()
            runner.stop_all()
            pool.shutdown(wait=True)
            for f, t in futures.items():  # stopped mid-run: what it produced, marked incomplete
                stopped = f.result() if f.done() and not f.cancelled() and f.exception() is None else runner.partial(t)
                if t.label not in done and stopped is not None and stopped.results:
                    done[t.label] = stopped
        raise
    pool.shutdown(wait=True)
    return [done[t.label] for t in targets]


def _keep_build_files(target: Target, out: Path) -> None:
    """The recipe build's log and .config, copied from the kernel cache into the kernel's results folder
    (an archived results folder is complete without the cache)."""
    for key, name in (("build_log", "build.log"), ("config_file", "config")):
        source = target.identity.get(key)
        if source:
            try:
                write_atomic(out / name, Path(str(source)).read_bytes())
            except OSError:
                continue


def _still_stopping() -> None:
    print("matrix: still stopping the running kernels", file=sys.stderr, flush=True)


def _read_results(out: Path) -> List[Result]:
    """The child's --json list, else its streamed verdicts.jsonl (a killed child still leaves those)."""
    try:
        return report.read_results(out / "results.json")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    stream = out / "verdicts.jsonl"
    return report.read_jsonl(stream) if stream.exists() else []


def _boot_facts(said: child_report.ChildReport) -> dict:
    """What a child's run.json says of its boot, with the last lines of its console log."""
    facts = said.facts()
    facts.pop("error", None)
    facts.pop("exit_status", None)  # the matrix's own view of the child's end goes in its place
    if said.console_log:
        try:
            lines = Path(said.console_log).read_text(errors="replace").splitlines()
            facts["console_excerpt"] = lines[-CONSOLE_EXCERPT_LINES:]
        except OSError:
            pass
    return facts


def _filled(
    target: Target, results: List[Result], owed: List[tuple], verdict: Verdict, reason: str, boot: dict
) -> KernelRun:
    """A KernelRun whose every owed (scenario, memory, run) has a Result: the missing ones get `verdict`."""
    identity = dict(results[0].kernel) if results else {}
    identity.update(boot.get("kernel_identity") or {})
    identity.update(target.identity)
    identity.setdefault("label", target.label)
    evidence = {k: boot[k] for k in ("console_log", "log", "timings", "panic_lines") if boot.get(k)}
    missing = plan.missing(owed, results, verdict, reason, evidence, identity)
    facts = {k: v for k, v in boot.items() if k != "kernel_identity"}
    return KernelRun(target.label, results + missing, identity, facts, dict(target.expect))
