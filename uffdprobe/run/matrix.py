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
from uffdprobe.osutil.files import write_atomic
from . import selftests
from .kernel_arg import safe
from .kernels import HOST, Target, build, check_kernels, declare, owner, parse_expect

__all__ = ["HOST", "CellLost", "Options", "Target", "Runner", "build", "check_kernels", "declare", "parse_expect", "planned",
           "run_all", "run_argv"]

CONSOLE_EXCERPT_LINES = 40
#: After SIGTERM a child gets this long to kill its QEMU and write its results before SIGKILL.
TERM_GRACE_S = 20.0


class CellLost(Exception):
    """An engine lost a kernel's run (a cluster worker died, twice): the reason every owed verdict gets."""


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
    scenarios_from: List[str] = field(default_factory=list)  # users' scenario files (absolute paths)
    exec_args: List[str] = field(default_factory=list)  # the --exec options and program for every kernel's run
    exec_row: Optional[str] = None  # its row name
    kselftest: List[str] = field(default_factory=list)  # mm selftests every kernel runs after the scenarios
    kselftest_from: Optional[str] = None  # where they come from (run --kselftest-from), None: each kernel's default


def planned(opts: Options, target: Optional[Target] = None) -> List[tuple]:
    """(scenario, memory, run) of every verdict a kernel owes; run is None with a single run. A selftest owes
    its run row (its cases are known once it ran): `target`'s recipe may add selftests to the matrix's."""
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
    from .exec_row import planned as exec_planned
    rows = [(s.name, m, i) for i in runs for s in chosen for m in s.memory if not opts.memory or m in opts.memory]
    if opts.exec_row and not opts.scenarios:  # --exec alone: its row only (and the selftests asked)
        rows = []
    return exec_planned(opts.exec_row, opts.runs) + rows + selftests.owed(kselftests(opts, target))


def kselftests(opts: Options, target: Optional[Target]) -> List[str]:
    """The selftests a kernel runs: the matrix's --kselftest, then its recipe's kselftest list."""
    return selftests.chosen(opts.kselftest + list(target.kselftest if target else []))


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
    for item in kselftests(opts, target):
        argv += ["--kselftest", item]
    if opts.kselftest_from:
        argv += ["--kselftest-from", opts.kselftest_from]
    for key, verdict in sorted(target.expect.items()):  # the child judges (and says) what the matrix will
        argv += ["--expect", f"{key}={verdict}"]
    if opts.verbose:
        argv.append("--verbose")
    for path in opts.scenarios_from:
        argv += ["--scenarios-from", path]
    if opts.exec_args:  # the program goes last: everything after --exec is its own
        return argv + list(opts.scenarios) + opts.exec_args
    return argv + list(opts.scenarios)


class Runner:
    """Runs kernels' `uffdprobe run` children, relays their lines with a prefix, stops them on request."""

    def __init__(self, opts: Options, work: Path, say: Callable[[str], None]):
        self.opts, self.work, self.say = opts, work, say
        self.live: Dict[str, subprocess.Popen] = {}
        self.folders: Dict[str, Path] = {}  # label -> this run's fresh results folder
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run_one(self, target: Target, index: str) -> KernelRun:
        """One kernel, start to finish, always ending in a KernelRun with a verdict for every planned run."""
        out = self._fresh_folder(target)
        owed = planned(self.opts, target)
        if target.build_error:
            return _filled(target, [], owed, Verdict.BUILD_FAIL, target.build_error, {"folder": str(out)})
        if self.stopping.is_set():  # interrupted before it started: nothing to report
            run = _filled(target, [], [], Verdict.ERROR, "interrupted before it started", {})
            run.complete = False
            return run
        what = f"booting {target.path}" if target.path else "on the running kernel"
        log = out / "run.log"
        self.say(f"{index} {target.label}: {what} (log: {log})")
        started, started_at = time.monotonic(), time.time()
        try:
            status = self._child(target, out, log)
        except OSError as exc:  # the interpreter cannot be executed (permissions), no processes left, ...
            self.say(f"{index} {target.label}: cannot start uffdprobe run: {exc}")
            return _filled(target, [], owed, Verdict.ERROR, f"cannot start uffdprobe run: {exc}", {})
        except CellLost as exc:
            self.say(f"{index} {target.label}: {exc}")
            return _filled(target, [], owed, Verdict.ERROR, str(exc), {"log": str(log)})
        took = time.monotonic() - started
        results = self._read_back(target, out, index)
        boot = _boot_facts(log)
        boot.update(log=str(log), exit_status=status, seconds=round(took, 1), started_at=round(started_at, 3),
                    folder=str(out))
        if (out / "console.log").is_file():  # the child kept it beside its verdicts: the archived copy
            boot["console_log"] = str(out / "console.log")
        if status is None:
            reason = f"uffdprobe run did not finish within {self._limit():g}s: killed (log: {log})"
        else:
            said = _last_message(log)
            reason = f"uffdprobe run ended (exit {status}) without this verdict{': ' + said if said else ''} " \
                     f"(log: {log})"
        verdict = Verdict(boot["outcome"]) if boot.get("outcome") in Verdict.__members__ else Verdict.ERROR
        if self.stopping.is_set():  # stopped: what it produced, no filler; the matrix says it was interrupted
            run = _filled(target, results, [], verdict, reason, boot)
            run.complete = False
            return run
        run = _filled(target, results, owed, verdict, boot.get("reason") or reason, boot)
        self.say(f"{index} {target.label}: done in {took:.1f}s: {report.summary(run.results)}")
        return run

    def _fresh_folder(self, target: Target) -> Path:
        """WORK/LABEL-HASH, or LABEL-HASH.2, .3, ... when an earlier run left one: never reused, never
        shared by two kernels; kernel.json in it says whose it is."""
        base = f"{safe(target.label)}-{target.key()}"
        self.work.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10000):
            out = self.work / (base if n == 1 else f"{base}.{n}")
            try:
                out.mkdir()
            except FileExistsError:
                continue
            write_atomic(out / "kernel.json", json.dumps(owner(target), indent=1).encode())
            _keep_build_files(target, out)
            self.folders[target.label] = out
            return out
        raise UsageError(f"{self.work}: 9999 results folders for {base} already; give another --results-dir")

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
            self.say(f"{index} {target.label}: {len(results) - len(mine)} result(s) in {out} came from another "
                     "kernel; dropped")
        return mine

    def partial(self, target: Target) -> Optional[KernelRun]:
        """An interrupted kernel: the verdicts it streamed so far, marked incomplete (None if it never ran)."""
        out = self.folders.get(target.label)
        if out is None:
            return None
        run = _filled(target, self._read_back(target, out), [], Verdict.ERROR, "", _boot_facts(out / "run.log"))
        run.complete = False
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
            done: Dict[str, KernelRun], on_kernel: Optional[Callable[[KernelRun], None]] = None,
            runner: Optional[Runner] = None) -> List[KernelRun]:
    """Every target, `jobs` at a time, in the order given; finished ones land in `done` (and are given to
    `on_kernel`) as they end. `runner` is the engine (default: children on this machine; a cluster's
    comes from run/engine_dask.py).

    On Ctrl-C (or any error) every child is stopped and reaped before the exception goes on."""
    runner = runner or Runner(opts, work, say)
    n = len(targets)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="matrix")
    futures = {pool.submit(runner.run_one, t, f"[{i}/{n}]"): t for i, t in enumerate(targets, 1)}
    try:
        pending = set(futures)
        while pending:
            finished, pending = concurrent.futures.wait(pending, timeout=0.5)
            for f in finished:
                done[futures[f].label] = f.result()
                if on_kernel:
                    on_kernel(done[futures[f].label])
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
                stopped = f.result() if f.done() and not f.cancelled() and f.exception() is None \
                    else runner.partial(t)
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
