"""Fill a matrix: one `uffdprobe run` per kernel (host directly, others in one boot each), J at a time."""
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from uffdprobe.results import report
from uffdprobe.results.matrix import KernelRun
from uffdprobe.exitcodes import UsageError
from uffdprobe.scenarios.registry import select
from uffdprobe.verdicts import Result, Verdict
from uffdprobe.osutil import children

HOST = "host"
CONSOLE_EXCERPT_LINES = 40
#: After SIGTERM a child gets this long to kill its QEMU and write its results before SIGKILL.
TERM_GRACE_S = 20.0


@dataclass
class Options:
    """What every kernel runs: scenarios, memory kinds, repeats, parameters and limits."""
    scenarios: List[str] = field(default_factory=list)
    memory: List[str] = field(default_factory=list)
    runs: int = 1
    params: List[str] = field(default_factory=list)
    vm_timeout: float = 900.0
    accel: Optional[str] = None
    verbose: bool = False  # each kernel's run also logs its QEMU command line and run directory


@dataclass
class Target:
    """One kernel to run: its label, what to boot (None: the running kernel), build identity, expectations."""
    label: str
    path: Optional[str] = None
    recipe: Optional[str] = None
    identity: Dict[str, object] = field(default_factory=dict)
    expect: Dict[str, str] = field(default_factory=dict)
    build_error: Optional[str] = None
    arg: str = ""  # the --kernel argument as given (LABEL=KERNEL included)


def check_kernels(labels: List[str]) -> List[Target]:
    """Resolve and check every --kernel (run/kernels.py) before any work; bad input raises UsageError."""
    from . import kernels
    targets = []
    for spec in kernels.resolve_all(labels):
        expect = dict(spec.recipe.expect) if spec.recipe is not None else {}
        path = str(spec.path) if spec.kind in ("image", "deb") else None
        targets.append(Target(spec.label, path=path, recipe=spec.recipe_ref, expect=expect, arg=spec.arg))
    return targets


def build(target: Target, say: Callable[[str], None]) -> None:
    """Build (or take from cache) a recipe kernel; a build failure is recorded, not raised."""
    if target.recipe is None:
        return
    from uffdprobe.kbuild import build as kbuild
    from uffdprobe.kbuild.errors import BadInput, KbuildError
    say(f"{target.label}: building or taking from the cache")
    try:
        built = kbuild.resolve_kernel(target.recipe)
    except BadInput as exc:
        raise UsageError(f"--kernel {target.label}: {exc}") from None
    except KbuildError as exc:
        target.build_error = f"{type(exc).__name__}: {exc}"
        say(f"{target.label}: build failed: {target.build_error}")
        return
    target.path = str(built.bzimage)
    keep = ("key", "name", "version", "config_sha256", "patches", "fragments", "compiler", "built_at")
    target.identity = {"recipe": target.recipe, "cached": built.cached,
                       **{k: built.identity.get(k) for k in keep if k in built.identity}}


def planned(opts: Options) -> List[tuple]:
    """(scenario, memory, run) of every verdict a kernel owes; run is None with a single run."""
    try:
        chosen = select(opts.scenarios)
    except KeyError as exc:
        raise UsageError(f"unknown scenario {exc.args[0]}; `uffdprobe list` shows them") from None
    for pair in opts.params:
        key = pair.partition("=")[0]
        if "=" not in pair or not any(key in s.defaults for s in chosen):
            raise UsageError(f"--param {pair}: write KEY=VALUE with KEY a parameter of a chosen scenario "
                             "(`uffdprobe list --all` shows them)")
    runs = [None] if opts.runs <= 1 else list(range(1, opts.runs + 1))
    return [(s.name, m, i) for i in runs for s in chosen for m in s.memory if not opts.memory or m in opts.memory]


def run_argv(target: Target, opts: Options, out: Path) -> List[str]:
    """The `uffdprobe run` command line for one kernel, writing its results under `out`."""
    argv = [sys.executable, "-m", "uffdprobe", "run", "--json", str(out / "results.json"),
            "--results-dir", str(out), "--runs", str(opts.runs)]
    if target.path:
        argv += ["--kernel", target.path, "--vm-timeout", str(opts.vm_timeout)]
        if opts.accel:
            argv += ["--accel", opts.accel]
    for mem in opts.memory:
        argv += ["--memory", mem]
    for pair in opts.params:
        argv += ["--param", pair]
    if opts.verbose:
        argv.append("--verbose")
    return argv + list(opts.scenarios)


class Runner:
    """Runs kernels' `uffdprobe run` children, relays their lines with a prefix, stops them on request."""

    def __init__(self, opts: Options, work: Path, say: Callable[[str], None]):
        self.opts, self.work, self.say = opts, work, say
        self.live: Dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run_one(self, target: Target, index: str) -> KernelRun:
        """One kernel, start to finish, always ending in a KernelRun with a verdict for every planned run."""
        out = self.work / _safe(target.label)
        out.mkdir(parents=True, exist_ok=True)
        owed = planned(self.opts)
        if target.build_error:
            return _filled(target, [], owed, Verdict.BUILD_FAIL, target.build_error, {})
        if self.stopping.is_set():
            return _filled(target, [], owed, Verdict.ERROR, "interrupted before it started", {})
        what = f"booting {target.path}" if target.path else "on the running kernel"
        log = out / "run.log"
        self.say(f"{index} {target.label}: {what} (log: {log})")
        started = time.monotonic()
        try:
            status = self._child(target, out, log)
        except OSError as exc:  # the interpreter cannot be executed (permissions), no processes left, ...
            self.say(f"{index} {target.label}: cannot start uffdprobe run: {exc}")
            return _filled(target, [], owed, Verdict.ERROR, f"cannot start uffdprobe run: {exc}", {})
        took = time.monotonic() - started
        results = _read_results(out)
        boot = _boot_facts(log)
        boot.update(log=str(log), exit_status=status, seconds=round(took, 1))
        if status is None:
            reason = f"uffdprobe run did not finish within {self._limit():g}s: killed (log: {log})"
        else:
            said = _last_message(log)
            reason = f"uffdprobe run ended (exit {status}) without this verdict{': ' + said if said else ''} " \
                     f"(log: {log})"
        verdict = Verdict(boot["outcome"]) if boot.get("outcome") in Verdict.__members__ else Verdict.ERROR
        run = _filled(target, results, owed, verdict, boot.get("reason") or reason, boot)
        if not self.stopping.is_set():  # a stopped kernel is not reported: the matrix says it was interrupted
            self.say(f"{index} {target.label}: done in {took:.1f}s: {report.summary(run.results)}")
        return run

    def _limit(self) -> float:
        return self.opts.vm_timeout + 120.0

    def _child(self, target: Target, out: Path, log: Path) -> Optional[int]:
        """Run the child to its end (bounded); its exit status, or None when it had to be killed."""
        with open(log, "w") as sink:
            with self.lock:  # stop_all() sees every child started, or none starts after it
                if self.stopping.is_set():
                    return None
                proc = subprocess.Popen(run_argv(target, self.opts, out), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                        start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1",
                                             children.DIE_WITH_PARENT: str(os.getpid())})
                self.live[target.label] = proc
            relay = threading.Thread(target=self._relay, args=(proc, sink, target.label), daemon=True)
            relay.start()
            try:
                status = proc.wait(timeout=self._limit())
            except subprocess.TimeoutExpired:
                children.stop(proc, grace=TERM_GRACE_S)
                status = None
            finally:
                relay.join(5)
                with self.lock:
                    self.live.pop(target.label, None)
        return status

    def _relay(self, proc: subprocess.Popen, sink, label: str) -> None:
        for line in proc.stdout:
            sink.write(line)
            sink.flush()
            self.say(f"  {label} | {line.rstrip()}")

    def stop_all(self) -> None:
        """Interrupted: ask every live child to stop (it kills its QEMU), then kill what is left.

        The children are stopped side by side, so the whole stop takes one grace period, not one each."""
        with self.lock:
            self.stopping.set()
            procs = list(self.live.values())
        stoppers = [threading.Thread(target=children.stop, args=(p, TERM_GRACE_S), daemon=True) for p in procs]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(TERM_GRACE_S + 30)


def run_all(targets: List[Target], opts: Options, work: Path, jobs: int, say: Callable[[str], None],
            done: Dict[str, KernelRun]) -> List[KernelRun]:
    """Every target, `jobs` at a time, in the order given; finished ones land in `done` as they end.

    On Ctrl-C (or any error) every child is stopped and reaped before the exception goes on."""
    runner = Runner(opts, work, say)
    n = len(targets)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="matrix")
    futures = {pool.submit(runner.run_one, t, f"[{i}/{n}]"): t for i, t in enumerate(targets, 1)}
    try:
        pending = set(futures)
        while pending:
            finished, pending = concurrent.futures.wait(pending, timeout=0.5)
            for f in finished:
                done[futures[f].label] = f.result()
    except BaseException:
        with children.signals_ignored((signal.SIGINT, signal.SIGTERM), _still_stopping):
            for f in futures:  # first, so no queued kernel starts while the running ones stop
                f.cancel()
            for f in futures:  # finished before the interrupt, not yet collected: kept
                if f.done() and not f.cancelled() and f.exception() is None:
                    done[futures[f].label] = f.result()
            runner.stop_all()
            pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    return [done[t.label] for t in targets]


def _still_stopping() -> None:
    print("matrix: still stopping the running kernels", file=sys.stderr, flush=True)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in Path(label).name) or "kernel"


def _read_results(out: Path) -> List[Result]:
    """The child's --json list, else its streamed verdicts.jsonl (a killed child still leaves those)."""
    try:
        return [Result.from_dict(d) for d in json.loads((out / "results.json").read_text())]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    stream = out / "verdicts.jsonl"
    return report.read_jsonl(stream) if stream.exists() else []


def _last_message(log: Path) -> str:
    """The child's last `uffdprobe: ...` line (why it stopped: a full disk, a bad kernel), or ''."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    said = [x[len("uffdprobe: "):] for x in lines if x.startswith("uffdprobe: ")]
    return said[-1] if said else ""


def _boot_facts(log: Path) -> dict:
    """From the child's log, the boot's run directory; from there outcome, timings, console excerpt."""
    run_dir = None
    try:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("[vm]") and "console:" in line:
                run_dir = Path(line.rsplit("console:", 1)[1].strip()).parent
    except OSError:
        return {}
    if run_dir is None:
        return {}
    facts: dict = {"run_dir": str(run_dir), "console_log": str(run_dir / "console.log")}
    try:
        boot = json.loads((run_dir / "result.json").read_text())
        facts.update({k: boot.get(k) for k in ("outcome", "reason", "timings", "accel", "panic_lines",
                                                "kernel_identity", "transport")})
    except (OSError, ValueError):
        pass
    try:
        lines = (run_dir / "console.log").read_text(errors="replace").splitlines()
        facts["console_excerpt"] = lines[-CONSOLE_EXCERPT_LINES:]
    except OSError:
        pass
    return facts


def _filled(target: Target, results: List[Result], owed: List[tuple], verdict: Verdict, reason: str,
            boot: dict) -> KernelRun:
    """A KernelRun whose every owed (scenario, memory, run) has a Result: the missing ones get `verdict`."""
    have = {(r.scenario, r.memory, r.params.get("run")) for r in results}
    identity = dict(results[0].kernel) if results else {}
    identity.update(boot.get("kernel_identity") or {})
    identity.update(target.identity)
    identity.setdefault("label", target.label)
    evidence = {k: boot[k] for k in ("console_log", "log", "timings", "panic_lines") if boot.get(k)}
    missing = [Result(name, mem, verdict, reason, evidence, identity, {} if run is None else {"run": run}, None)
               for name, mem, run in owed if (name, mem, run) not in have]
    facts = {k: v for k, v in boot.items() if k != "kernel_identity"}
    return KernelRun(target.label, results + missing, identity, facts, dict(target.expect))
