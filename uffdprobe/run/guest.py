# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe run --kernel K`: boot K once, run the scenarios inside, bring every verdict back."""

import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional

from uffdprobe.results import report
from uffdprobe.exitcodes import Exit, UsageError
from . import guest_python, kernel_arg, plan, user_scenarios
from .child_report import Reporter
from .host import VerdictStream, finish, ktap_finish, ktap_start, table_stream
from uffdprobe.scenarios import memkinds
from .request import RunRequest
from uffdprobe.verdicts import Result, Verdict
from uffdprobe.vm.boot import GUEST_CHANNEL
from uffdprobe.vm.outcome import CHANNEL_LOST, OUTCOME_EXIT, PANIC

#: The guest sees the scratch virtio-blk disk here; O_DIRECT scenarios write to it.
GUEST_SCRATCH = "/dev/vda"
#: Where the guest reads the archive of its Python modules (run.guest_python.archive(), brought along).
GUEST_ARCHIVE = f"{GUEST_CHANNEL}/{guest_python.ARCHIVE_NAME}"
#: The guest run's exit statuses for a results stream it could no longer write (run.host.VerdictStream).
GUEST_LOST = (Exit.CHANNEL_LOST, Exit.NO_SPACE)


def check_visible_in_guest() -> None:
    """Refuse early (before any kernel build) an interpreter or checkout the guest cannot see: under
    /tmp or /var/tmp the guest binds them back (vm.boot.keep_visible); under /run, /dev, /proc or /sys
    it cannot."""
    from uffdprobe.vm.boot import GUEST_PRIVATE_DIRS, host_paths_needed

    for path in host_paths_needed():
        hidden = [d for d in GUEST_PRIVATE_DIRS if path == d or path.startswith(d + "/")]
        if hidden and (hidden[0] not in ("/tmp", "/var/tmp") or path == hidden[0] or "," in path or " " in path):
            raise UsageError(
                f"{path} is under {hidden[0]}, which the guest covers with its own filesystem; "
                "install uffdprobe (its checkout and .venv) elsewhere"
            )
    user_scenarios.check_visible(GUEST_PRIVATE_DIRS)


def guest_argv(request: RunRequest) -> List[str]:
    """The same `uffdprobe run` inside the guest (RunRequest.for_guest); it streams to $UFFDPROBE_RESULTS
    (the results channel). An --exec program must be one the guest sees: run_in_vm checks it first and
    brings one under /tmp along (exec_row.bring_along)."""
    check_visible_in_guest()
    from uffdprobe.osutil.swap import SERIAL_ENV
    from uffdprobe.vm.boot import SWAP_SERIAL

    from uffdprobe.scenarios import sources

    env, *python = guest_python.from_archive(GUEST_ARCHIVE)  # `/usr/bin/env PYTHONPATH=... python -S -c START`
    hugepages = [f"{memkinds.HUGEPAGES_ENV}={memkinds.GUEST_HUGEPAGES}"] if _plans_hugetlb(request) else []
    # the guest sees the same installed distributions: where they add no scenario, it need not scan them
    plugins = any(s.kind == "entry point" for s in sources.load())
    return [
        env,
        f"UFFDPROBE_SCRATCH_DEV={GUEST_SCRATCH}",
        f"{SERIAL_ENV}={SWAP_SERIAL}",
        *hugepages,
        *([] if plugins else [f"{sources.ENTRY_POINTS_ENV}=none"]),
        *python,
        "run",
        *request.for_guest().to_argv(),
    ]


def _plans_hugetlb(request: RunRequest) -> bool:
    """Whether the guest's run may plan a hugetlb cell (then it reserves huge pages before the first one)."""
    try:
        return any(memory == "hugetlb" for _, memory, _ in plan.owed(request))
    except UsageError:
        return False  # an unknown name: the guest's run refuses it


class _Tail(threading.Thread):
    """Print each verdict line the guest appends to verdicts.jsonl while the VM runs, and stream it on,
    stamped with the booted file's identity, to --results-dir's verdicts.jsonl (kept if we are killed)."""

    def __init__(
        self,
        path: Path,
        out,
        stream: Optional[VerdictStream],
        stamp: dict,
        on_result=None,
        numbered: Optional[report.Numbered] = None,
    ):
        super().__init__(name="verdict-tail", daemon=True)
        self.numbered = numbered or report.Numbered([])
        self.path, self.out, self.seen, self.stop = path, out, 0, threading.Event()
        self.stream, self.stamp, self.on_result = stream, stamp, on_result
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.poll()

    def poll(self) -> None:
        with self.lock:
            if self.path.exists():
                results = report.read_jsonl(self.path)
                fresh = results[self.seen :]
                for r in fresh:
                    self.show(r)
                self.forward(fresh)
                self.seen = max(self.seen, len(results))

    def finish(self) -> None:
        """Stop polling and take in the last verdicts the guest wrote."""
        self.stop.set()
        self.join(2)
        self.poll()

    def show(self, r: Result) -> None:
        print(self.numbered.line(r), file=self.out, flush=True)
        if self.on_result:
            self.on_result(r)

    def forward(self, results: List[Result]) -> None:
        """Append `results`, stamped, to the --results-dir stream."""
        for r in results if self.stream else ():
            r.kernel = {**r.kernel, **self.stamp}
            host_paths(r, self.path.parent)
            self.stream.append(r)


#: Where the guest sees its results channel (vm/guest_init.sh's CHANNEL); the host has it in the run dir.
GUEST_RESULTS = f"{GUEST_CHANNEL}/results/"


def host_paths(r: Result, host_results: Path) -> None:
    """A file the guest wrote into its results channel (a selftest's output) named by its host path."""
    log = r.evidence.get("log")
    if isinstance(log, str) and log.startswith(GUEST_RESULTS):
        r.evidence["log"] = str(host_results / log[len(GUEST_RESULTS) :])


def file_identity(kernel: str) -> dict:
    """What a result carries of the file it was booted from: its path and content hash (the key a matrix
    checks before reading a result back)."""
    from uffdprobe.osutil.files import sha256_file

    path = Path(kernel)
    if path.is_dir():  # a tuxmake folder: the bzImage in it is what boots
        from uffdprobe.vm.tuxmake import IMAGE

        path = path / IMAGE
    try:
        return {"file": str(path.resolve()), "file_sha256": sha256_file(path)}
    except OSError:  # unreadable or gone: the boot says so, as one line
        return {}


def run_in_vm(request: RunRequest, spec: "kernel_arg.KernelSpec", reporter: Optional[Reporter] = None) -> int:
    """`run --kernel K` for a K that is not the host: build it if it is a recipe, boot, run, report (how
    the boot went also to `reporter`, the run's run.json)."""
    reporter = reporter or Reporter(None)
    check_visible_in_guest()  # before any kernel build
    from uffdprobe.vm.boot import Terminated, boot
    from uffdprobe.osutil.files import usable_dir
    from uffdprobe.vm.paths import cache_root, new_run_dir
    from . import exec_row

    outputs = request.outputs
    planned = plan.owed(request)  # what KTAP announces and a dead guest's missing rows are filled from
    usable_dir(cache_root() / "runs", "the run folder", "point XDG_CACHE_HOME at a writable folder", create=False)
    exec_row.check_guest_sees_program(request)  # refused before any build
    from uffdprobe.kbuild.errors import KbuildError

    try:
        kernel = kernel_arg.bootable(spec)
    except KbuildError as exc:  # patch, config or build failure of a recipe: its own exit status
        raise exc.context(f"--kernel {spec.arg}") from None
    stamp = file_identity(kernel)
    table = table_stream(outputs)
    run_dir = new_run_dir(create=False)
    ktap_out = ktap_start(outputs, planned, spec.label, [f"kernel: {kernel}"])
    stream = VerdictStream(outputs.results_dir) if outputs.results_dir else None
    tail = _Tail(
        run_dir / "channel" / "results" / "verdicts.jsonl",
        table,
        stream,
        stamp,
        ktap_out.add if ktap_out else None,
        report.Numbered(planned),
    )
    tail.start()
    kept_in = outputs.results_dir or run_dir / "channel" / "results"
    reporter.update(run_dir=str(run_dir), console_log=str(run_dir / "console.log"))  # known before QEMU starts

    def progress(text: str) -> None:
        print(f"[vm] {text}", file=sys.stderr, flush=True)

    verbosity = outputs.verbosity
    guest_python.precompile()  # the guest compiles nothing under TCG (what the archive lacks included)
    try:
        in_guest, bring = exec_row.bring_along(request)  # a program under /tmp: its copy in the channel
        bring = {**bring, **_archive()}
        result = boot(
            kernel,
            guest_argv(in_guest),
            timeout=request.limits.vm_timeout,
            accel=request.machine.accel,
            progress=progress if verbosity >= 0 else None,
            run_dir=run_dir,
            extra_append=list(request.machine.append),
            bring=bring,
            **exec_row.boot_options(request),
        )
    except (Terminated, KeyboardInterrupt) as exc:
        tail.finish()
        how = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
        reporter.say(f"{how}; {tail.seen} verdict(s) kept in {kept_in}")
        return Exit.INTERRUPTED
    finally:
        tail.finish()  # what arrived since its last look, streamed on before any return
        (run_dir / "channel" / guest_python.ARCHIVE_NAME).unlink(missing_ok=True)  # its copy: the cache keeps it
    reporter.booted(result)
    if verbosity > 0:
        progress(f"run directory {result.run_dir}; QEMU: {' '.join(result.qemu_argv)}")
    channel = result.results_dir / "verdicts.jsonl"
    results = report.read_jsonl(channel) if channel.exists() else []
    # the channel went away: seen by the host (CHANNEL_LOST) or said by the guest's own exit status
    lost = result.outcome == CHANNEL_LOST or (result.outcome == "OK" and result.exit_status in GUEST_LOST)
    for r in results[tail.seen :]:
        tail.show(r)
    kept = len(results)
    missing = _cut_off(planned, results, result, started=channel.exists())
    for r in missing:
        tail.show(r)
    tail.forward(results[tail.seen :] + missing)  # the first tail.seen went out as they arrived
    if ktap_out:
        ktap_finish(ktap_out, f"boot outcome: {result.outcome}; console log: {result.console_log}")
    results += missing
    kept_files = _keep_outputs(result.results_dir, outputs.results_dir, result.console_log)
    console = kept_files.get(str(result.console_log))
    for r in results:  # the evidence names the copies in --results-dir, which a CI job archives
        r.kernel = {**r.kernel, **stamp}
        host_paths(r, result.results_dir)
        for key in ("console_log", "log"):
            if r.evidence.get(key) in kept_files:
                r.evidence[key] = kept_files[r.evidence[key]]
    boot_facts = {
        "outcome": result.outcome,
        "reason": result.reason,
        "timings": result.timings,
        "accel": result.accel,
        "panic_lines": result.panic_lines,
        "console_log": str(console or result.console_log),
    }  # for --kcidb
    status = finish(results, request, table, boot_facts)
    if lost:
        reporter.say(
            f"CHANNEL_LOST: the guest lost its results channel (guest exit {result.exit_status}); "
            f"{kept} verdict(s) kept, the rest only in the console log: {result.console_log}"
        )
        return Exit.NO_SPACE if result.exit_status == Exit.NO_SPACE else Exit.CHANNEL_LOST
    if result.outcome in OUTCOME_EXIT:
        reporter.say(f"{result.outcome}: {result.reason}; {kept} verdict(s) kept; console log: {result.console_log}")
        if result.outcome == PANIC and status == Exit.OK:  # the panic was declared for the row it ended
            return status
        return OUTCOME_EXIT[result.outcome]
    if status != Exit.OK:
        print(f"console log: {result.console_log}", file=sys.stderr)
    return status


def _archive() -> Dict[str, Path]:
    """What the guest's Python needs brought along: the archive of its modules; nothing when it cannot be
    written (a full or read-only cache: the guest then imports from the host folders, and boot() refuses
    a disk too full to boot on, naming it)."""
    try:
        return {guest_python.ARCHIVE_NAME: guest_python.archive()}
    except OSError:
        return {}


def _keep_outputs(channel: Path, results_dir: Optional[str], console_log: Path) -> Dict[str, str]:
    """The guest's console log and the selftests' output files, copied (whole) into --results-dir beside
    the verdicts, so an archived results folder has them: {original path: the copy's path}."""
    if not results_dir:
        return {}
    from uffdprobe.osutil.files import write_atomic

    kept = {}
    for path in [console_log] + sorted(channel.glob("kselftest-*.txt")):
        try:
            write_atomic(Path(results_dir) / path.name, path.read_bytes())
        except OSError as exc:
            print(
                f"uffdprobe: cannot keep {path.name} in {results_dir} ({exc.strerror}); it stays in {path.parent}",
                file=sys.stderr,
            )
            continue
        kept[str(path)] = str(Path(results_dir) / path.name)
    return kept


def _cut_off(planned: List[plan.Row], results: List[Result], boot, started: bool) -> List[Result]:
    """A verdict for every planned run the guest never reported: the boot's outcome, or ERROR. Rows run one
    at a time in plan order, so once the guest had `started` its plan (its verdict stream exists), the first
    of them is the one that was running when the boot ended: it alone gets the boot's reason and report
    (evidence "running"; after a panic also "kernel_report", what the kernel said from its first splat
    on; a PANIC declared for it is its answer). The others say they never ran."""
    verdict = Verdict(boot.outcome) if boot.outcome in Verdict.__members__ else Verdict.ERROR
    if boot.outcome in OUTCOME_EXIT:
        reason = boot.reason
    elif boot.exit_status in GUEST_LOST:
        reason = f"the guest lost its results channel before this verdict (guest exit {boot.exit_status})"
    else:
        reason = f"the guest command ended (exit {boot.exit_status}) without this verdict"
    evidence = {
        "console_log": str(boot.console_log),
        "console_tail": _tail_lines(boot.console_log),
        "panic_lines": boot.panic_lines,
        "timings": boot.timings,
    }
    missing = plan.missing(planned, results, verdict, reason, evidence, boot.kernel_identity)
    if not started or not missing:
        return missing
    running = missing[0]
    running.evidence["running"] = True
    if boot.outcome == PANIC:  # its first report: the oops may be far above the panic it led to
        running.evidence["kernel_report"] = boot.kernel_report
    for r in missing[1:]:
        r.reason = f"never ran: the boot ended while {running.scenario}[{running.memory}] ran: {reason}"
        r.evidence["running"] = False
    return missing


def _tail_lines(path: Path, n: int = 25) -> List[str]:
    """The last lines of the console log: where a guest command that died says why."""
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []
