"""Fill a matrix: one `uffdprobe run` per kernel (host directly, others in one boot each), J at a time."""
import concurrent.futures
import hashlib
import json
import os
import re
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
from uffdprobe.osutil.files import sha256_file, write_atomic

HOST = "host"
#: A label given as LABEL=KERNEL: short, and safe as a folder name, a JUnit classname part and an --expect key.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,47}$")
#: The content hash digits in a results folder's name and a file kernel's default label.
SHORT = 12
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


@dataclass
class Target:
    """One kernel to run: its label, what to boot (None: the running kernel), build identity, expectations.

    `given` is the --kernel value as typed; `sha256` the content hash of what is booted (None for host
    and for a recipe until it is built)."""
    label: str
    path: Optional[str] = None
    recipe: Optional[str] = None
    identity: Dict[str, object] = field(default_factory=dict)
    expect: Dict[str, str] = field(default_factory=dict)
    build_error: Optional[str] = None
    given: str = ""
    sha256: Optional[str] = None

    def key(self) -> str:
        """The short content hash that names this kernel's results folder: the booted file's, or the
        running kernel's release and version, or the recipe's (before its build, when it failed)."""
        if self.path:
            if self.sha256 is None:
                self.sha256 = sha256_file(Path(self.path))
            return self.sha256[:SHORT]
        if self.recipe:
            return hashlib.sha256(f"recipe:{self.recipe}".encode()).hexdigest()[:SHORT]
        uname = os.uname()
        return hashlib.sha256(f"host:{uname.release} {uname.version}".encode()).hexdigest()[:SHORT]

    def owns(self, r: Result) -> bool:
        """Whether a Result read back from disk was produced by this kernel (identity checked, not assumed)."""
        if self.path:
            return r.kernel.get("file_sha256") == self.sha256
        return r.kernel.get("release") == os.uname().release


def check_kernels(specs: List[str]) -> List[Target]:
    """Validate every --kernel [LABEL=]KERNEL before any work; bad input raises UsageError naming the fix.

    Default labels: 'host', the recipe name, or the file name plus a short content hash."""
    from uffdprobe.kbuild import recipes
    targets = []
    for spec in specs:
        label, eq, kernel = spec.partition("=")
        if not (eq and kernel and LABEL.match(label)):
            label, kernel = "", spec
        if kernel == HOST:
            target = Target(label or HOST)
        elif Path(kernel).is_file():
            path = Path(kernel).resolve()
            try:
                target = Target(label, path=str(path), sha256=sha256_file(path))
            except OSError as exc:
                raise UsageError(f"--kernel {spec}: cannot read {path} ({exc.strerror}); make it readable "
                                 f"(chmod a+r {path}) or give another kernel") from None
            target.label = label or f"{_safe(path.name)}-{target.sha256[:8]}"
        elif kernel in recipes.names():
            target = Target(label or kernel, recipe=kernel, expect=dict(recipes.load(kernel).expect))
        else:
            raise UsageError(f"--kernel {spec}: not 'host', not a file, not a recipe (nor LABEL=one of them); "
                             "recipes: " + ", ".join(recipes.names()))
        target.given = spec
        targets.append(target)
    labels = [t.label for t in targets]
    for t in targets:
        if labels.count(t.label) > 1:
            raise UsageError(f"--kernel {t.given}: the same kernel label {t.label!r} is given twice; give each "
                             "kernel once, or name them apart with --kernel LABEL=KERNEL")
    return targets


def parse_expect(items: List[str], targets: List[Target]) -> Dict[str, Dict[str, str]]:
    """--expect [KERNEL:]SCENARIO[/MEMORY]=VERDICT values as {kernel label or '*': {key: verdict}};
    KERNEL is a kernel's label or its --kernel value as given. Bad ones raise UsageError."""
    from uffdprobe.kbuild.errors import BadInput
    from uffdprobe.kbuild.recipes import VERDICTS, check_expect
    names = {t.label: t.label for t in targets}
    names.update({t.given: t.label for t in targets if t.given})
    out: Dict[str, Dict[str, str]] = {}
    for item in items:
        left, sep, verdict = item.rpartition("=")
        kernel, colon, scenario = left.rpartition(":")
        kernel = kernel if colon else "*"
        if not sep or not scenario or verdict not in VERDICTS:
            raise UsageError(f"--expect {item!r}: write [KERNEL:]SCENARIO[/MEMORY]=VERDICT with VERDICT one of "
                             + ", ".join(sorted(VERDICTS)))
        if kernel != "*" and kernel not in names:
            raise UsageError(f"--expect {item!r}: {kernel} is not one of the --kernel values or labels "
                             f"({', '.join(sorted(names.values()))})")
        try:
            check_expect({scenario: verdict}, f"--expect {item!r}")
        except BadInput as exc:
            raise UsageError(str(exc)) from None
        out.setdefault(names.get(kernel, kernel), {})[scenario] = verdict
    return out


def declare(targets: List[Target], overrides: Dict[str, Dict[str, str]]) -> None:
    """Add --expect declarations to each target's recipe ones: for every kernel, then for that label."""
    from uffdprobe.results.expect import SEPARATOR
    for t in targets:
        for key, verdict in [*overrides.get("*", {}).items(), *overrides.get(t.label, {}).items()]:
            if SEPARATOR not in key:  # SCENARIO=V overrides the recipe's SCENARIO/MEMORY ones too
                t.expect = {k: v for k, v in t.expect.items() if not k.startswith(key + SEPARATOR)}
            t.expect[key] = verdict


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
    target.sha256 = None  # hashed from the file when its folder is named
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
        results = self._read_back(target, out, index)
        boot = _boot_facts(log)
        boot.update(log=str(log), exit_status=status, seconds=round(took, 1))
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
        base = f"{_safe(target.label)}-{target.key()}"
        self.work.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10000):
            out = self.work / (base if n == 1 else f"{base}.{n}")
            try:
                out.mkdir()
            except FileExistsError:
                continue
            write_atomic(out / "kernel.json", json.dumps(_owner(target), indent=1).encode())
            self.folders[target.label] = out
            return out
        raise UsageError(f"{self.work}: 9999 results folders for {base} already; give another --results-dir")

    def _read_back(self, target: Target, out: Path, index: str = "") -> List[Result]:
        """The child's results from its folder, only after checking folder and results are this kernel's."""
        try:
            owner = json.loads((out / "kernel.json").read_text())
        except (OSError, ValueError):
            owner = None
        if owner != _owner(target):
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
            for f, t in futures.items():  # stopped mid-run: what it produced, marked incomplete
                stopped = f.result() if f.done() and not f.cancelled() and f.exception() is None \
                    else runner.partial(t)
                if t.label not in done and stopped is not None and stopped.results:
                    done[t.label] = stopped
        raise
    pool.shutdown(wait=True)
    return [done[t.label] for t in targets]


def _still_stopping() -> None:
    print("matrix: still stopping the running kernels", file=sys.stderr, flush=True)


def _owner(target: Target) -> dict:
    """Who a results folder belongs to: label, what was given, and the content hash of the kernel."""
    return {"label": target.label, "given": target.given, "path": target.path, "key": target.key()}


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
