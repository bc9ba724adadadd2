# SPDX-License-Identifier: GPL-2.0-only
"""Any program as a supervised workload (`--exec`): run it in a process group of its own, watch its whole
process tree from /proc, and end in exactly one Result.

HANG: a task stays in handle_userfault (wchan, kernel stack) for hang_s while a userfaultfd of the tree
has unanswered faults (fdinfo), and the tree has shown no sign of progress (supervise/progress.py) for
hang_s either: nobody will answer. A tree that keeps moving is slow, not hung: the wait grows with each
sign of progress, up to total_s, and its faults are left to its own handler. Only a HANG's faults are
answered through a pidfd_getfd duplicate (rescue), again each time the rule holds, and the program gets
rescue_s after the last answer to finish, else it is killed. STUCK: a task stays in D outside handle_userfault, or runnable and burning CPU, for stuck_s: the
tree is killed. PASS: exit 0. FAIL: any other exit, with the tail of its output. ERROR: it could not be
started, or it ran past total_s without any task stuck. stdout and stderr come back bounded.
"""

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from uffdprobe.osutil import children, lifetime
from uffdprobe.scenarios.rows import NO_MEMORY
from uffdprobe.verdicts import Result, Verdict
from . import procfs, progress, rescue, tasks
from .loop import exited, supervise
from .protocol import Bounds, Ending, Step
from .splat import SplatWatch

POLL_S = 0.25
#: A task runnable at every sample for stuck_s spins only if it used at least this share of the time on a CPU.
SPIN_CPU_SHARE = 0.25
MAX_ANSWERS = 256


@dataclass
class ExecLimits:
    """Bounds of one program run (seconds): hang_s in handle_userfault with faults unanswered is HANG;
    stuck_s in D elsewhere, or spinning, is STUCK; total_s for the whole run; rescue_s after the last
    answer of a rescue; output_bytes kept of stdout and of stderr each (half head, half tail)."""

    hang_s: float = 2.0
    stuck_s: float = 30.0
    total_s: float = 300.0
    rescue_s: float = 30.0
    output_bytes: int = 16384


class _Tracker:
    """Since when each task has been in handle_userfault, in D elsewhere, or runnable (with its CPU ticks)."""

    def __init__(self):
        self.uffd: Dict[Tuple[int, int], float] = {}
        self.dstate: Dict[Tuple[int, int], float] = {}
        self.running: Dict[Tuple[int, int], Tuple[float, Optional[tuple]]] = {}

    def sample(self, now: float, snapshot: List[dict]) -> None:
        live = set()
        for t in snapshot:
            key = (t["pid"], t["tid"])
            live.add(key)
            blocked = tasks.in_userfault(t)
            _keep(self.uffd, key, blocked, now)
            _keep(self.dstate, key, t["state"] == "D" and not blocked, now)
            if t["state"] == "R":
                self.running.setdefault(key, (now, procfs.cpu_ticks(*key)))
            else:
                self.running.pop(key, None)
        for table in (self.uffd, self.dstate, self.running):
            for key in [k for k in table if k not in live]:
                del table[key]

    def in_uffd_for(self, now: float, seconds: float) -> List[Tuple[int, int]]:
        return [k for k, since in self.uffd.items() if now - since >= seconds]

    def stuck_for(self, now: float, seconds: float, uffd_s: float) -> List[Tuple[Tuple[int, int], str]]:
        """Tasks stuck outside a uffd wait for `seconds`, or in one for `uffd_s` (past the hang limit too, so
        the HANG rule had its turn: no userfaultfd of the tree has the fault), and how."""
        out = [
            (k, "D (uninterruptible) outside handle_userfault")
            for k, since in self.dstate.items()
            if now - since >= seconds
        ]
        out += [
            (k, "in handle_userfault, but no userfaultfd of the workload has an unanswered fault")
            for k, since in self.uffd.items()
            if now - since >= uffd_s
        ]
        for key, (since, ticks) in self.running.items():
            if now - since < seconds:
                continue
            after = procfs.cpu_ticks(*key)
            if ticks is None or after is None:
                continue
            hz = os.sysconf("SC_CLK_TCK")
            user, system = (after[0] - ticks[0]) / hz, (after[1] - ticks[1]) / hz
            if user + system >= SPIN_CPU_SHARE * (now - since):
                where = "in the kernel" if system > user else "in user space"
                out.append(
                    (
                        key,
                        f"runnable for {now - since:.1f}s, spinning {where} "
                        f"(user {user:.1f}s, system {system:.1f}s of CPU)",
                    )
                )
        return out


def _keep(table: dict, key, condition: bool, now: float) -> None:
    if condition:
        table.setdefault(key, now)
    else:
        table.pop(key, None)


def bounded_output(path: str, limit: int) -> Dict[str, Any]:
    """A captured stream: its size, and its text whole or as head and tail with how much was cut."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size <= limit:
                return {"bytes": size, "cut_bytes": 0, "text": f.read().decode(errors="replace")}
            head = f.read(limit // 2)
            f.seek(size - limit // 2)
            tail = f.read()
    except OSError as exc:
        return {"bytes": None, "cut_bytes": 0, "text": f"<unreadable: {exc.strerror}>"}
    cut = size - len(head) - len(tail)
    text = head.decode(errors="replace") + f"\n[... {cut} bytes cut ...]\n" + tail.decode(errors="replace")
    return {"bytes": size, "cut_bytes": cut, "text": text}


def _tail(out: Dict[str, Any], lines: int = 5) -> str:
    return " | ".join(str(out.get("text", "")).strip().splitlines()[-lines:])


class _Program:
    """A program as a Workload (protocol.py): its output into files, its process tree sampled each tick
    (HANG with a rescue, STUCK), its exit status the verdict otherwise."""

    def __init__(
        self,
        name: str,
        argv: List[str],
        kernel: Dict[str, Any],
        limits: ExecLimits,
        cwd: Optional[str],
        env: Optional[Dict[str, str]],
        logs: str,
    ):
        self.name, self.argv, self.kernel, self.limits, self.cwd, self.env = name, argv, kernel, limits, cwd, env
        self.params = {"argv": list(argv), "cwd": cwd or os.getcwd()}
        self.out_path, self.err_path = os.path.join(logs, "stdout"), os.path.join(logs, "stderr")
        self.proc: Optional[subprocess.Popen] = None
        self.cannot: Optional[str] = None
        self.track = _Tracker()
        self.moving = progress.Progress(time.monotonic())
        self.evidence: Dict[str, Any] = {}
        self.hang: Optional[Dict[str, Any]] = None
        self.answered: List[dict] = []
        self.actions: List[str] = []
        self.stuck: Optional[Tuple[Verdict, str]] = None

    def start(self) -> Optional[subprocess.Popen]:
        try:
            with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
        except OSError as exc:
            self.cannot = f"cannot run {self.argv[0]}: {exc.strerror or exc}"
        return self.proc

    def wait(self, seconds: float) -> bool:
        return exited(self.proc, seconds)

    def tick(self, now: float) -> Step:
        """Sample the tree: a HANG's faults answered (again each time the rule holds), or STUCK."""
        assert self.proc is not None
        limits, track = self.limits, self.track
        snapshot = procfs.task_evidence(self.proc.pid)
        track.sample(now, snapshot)
        holders = procfs.userfaultfds(sorted({t["pid"] for t in snapshot}))
        self.moving.sample(now, snapshot, holders)
        blocked = track.in_uffd_for(now, limits.hang_s)
        if (
            blocked
            and any(h.unanswered for h in holders)
            and self.moving.quiet_for(now) >= limits.hang_s
            and len(self.answered) < MAX_ANSWERS
        ):  # nobody will answer: only now is it ours to answer
            if self.hang is None:
                self.hang = _hang_evidence(snapshot, blocked)
                self.hang["progress"] = self.moving.as_data(now)
                self.evidence.update(hang=self.hang, userfaultfds=[h.as_data() for h in holders], tasks=snapshot)
            read, acts = rescue.answer_pending(holders)
            self.answered += read
            self.actions += acts
            self.hang["pending_uffd_messages"] = self.answered
            for key in blocked:  # each answered wait starts its clock anew
                track.uffd.pop(key, None)
            return Step.RESCUED
        if self.hang is None:
            stuck = track.stuck_for(now, limits.stuck_s, max(limits.stuck_s, limits.hang_s))
            if stuck:
                self.stuck = _stuck(self.evidence, snapshot, stuck, limits)
                return Step.STOP
        return Step.GO_ON

    def result(self, ending: Ending) -> Result:
        if self.proc is None or ending.stopped is None:
            return Result(
                self.name,
                NO_MEMORY,
                Verdict.ERROR,
                str(self.cannot),
                {"argv": list(self.argv)},
                self.kernel,
                self.params,
                ending.took,
            )
        proc, evidence, limits = self.proc, self.evidence, self.limits
        verdict: Optional[Verdict] = None
        reason = ""
        if self.stuck is not None:
            verdict, reason = self.stuck
        elif self.hang is not None:
            verdict, reason = _hanged(
                evidence,
                self.hang,
                self.answered,
                self.actions,
                proc.returncode if ending.ended else None,
                ending.at_bound,
                limits,
            )
        elif ending.timed_out:
            evidence["tasks"] = ending.at_bound
            states = ", ".join(f"{t['pid']}/{t['tid']} {t['state']}" for t in evidence["tasks"] or [])
            verdict = Verdict.ERROR
            reason = f"still running after {limits.total_s:g}s with no task stuck ({states}): killed"
        evidence["exit"] = _exit_facts(proc.returncode if ending.stopped.reaped else None, ending.stopped)
        evidence["stdout"] = bounded_output(self.out_path, limits.output_bytes)
        evidence["stderr"] = bounded_output(self.err_path, limits.output_bytes)
        if verdict is None:
            status = proc.returncode
            if status == 0:
                verdict, reason = Verdict.PASS, "exited 0"
            else:
                how = f"killed by signal {signal.Signals(-status).name}" if status < 0 else f"exited {status}"
                tail = _tail(evidence["stderr"]) or _tail(evidence["stdout"])
                verdict, reason = Verdict.FAIL, f"{how}" + (f": {tail}" if tail else "")
        evidence["argv"] = list(self.argv)
        return Result(self.name, NO_MEMORY, verdict, reason, evidence, self.kernel, self.params, ending.took)

    def rows(self, judged: Result) -> List[Result]:
        return [judged]


def run_program(
    name: str,
    argv: List[str],
    kernel: Dict[str, Any],
    limits: ExecLimits,
    cwd: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    splats: Optional[SplatWatch] = None,
) -> Result:
    """Run argv under the supervisor; exactly one Result (scenario `name`, memory NO_MEMORY). With
    `splats`, the kernel log around the run judges it too (WARN/OOPS for a splat while it ran)."""
    with tempfile.TemporaryDirectory(prefix=lifetime.temp_prefix("exec")) as logs:
        bounds = Bounds(total_s=limits.total_s, rescue_s=limits.rescue_s, poll_s=POLL_S, snapshot=procfs.task_evidence)
        return supervise(_Program(name, argv, kernel, limits, cwd, env, logs), bounds, splats)[0]


def _exit_facts(status: Optional[int], ended: children.Stopped) -> Dict[str, Any]:
    facts: Dict[str, Any] = {
        "status": status,
        "killed": ended.killed or (status is not None and status < 0),
        "stragglers_killed": ended.stragglers,
    }
    if not ended.reaped:
        facts["unkillable"] = "SIGKILL did not end it within 10s (a task in an unkillable sleep)"
    return facts


def _hang_evidence(snapshot: List[dict], blocked: List[tuple]) -> Dict[str, Any]:
    keys = set(blocked)
    return {
        "watched_call": "the program",
        "pending_uffd_messages": [],
        "blocked_tasks": [t for t in snapshot if (t["pid"], t["tid"]) in keys],
        "all_task_states": {f"{t['pid']}/{t['tid']}": t["state"] for t in snapshot},
    }


def _hanged(evidence, hang, answered, actions, status, at_kill, limits) -> Tuple[Verdict, str]:
    evidence["rescue_actions"] = actions
    faults = [m for m in answered if m.get("event") == "pagefault"]
    if faults:
        evidence["fault_address"] = faults[0]["address"]
    n = len(hang["blocked_tasks"])
    what = (
        ", ".join(f"{m['address']} {'|'.join(m.get('flags') or ['MISSING'])}" for m in faults[:4])
        or "no message could be read"
    )
    if status is not None:
        evidence["rescue"] = (
            f"rescued through pidfd_getfd: {len(faults)} fault(s) answered ({what}); the program then exited {status}"
        )
        evidence["rescued"] = True
    else:
        evidence["rescue"] = (
            f"not rescued: {len(faults)} fault(s) answered ({what}), still not done "
            f"{limits.rescue_s:g}s after the last answer: killed and reaped"
        )
        evidence["rescued"] = False
        evidence["tasks_at_kill"] = at_kill
    quiet = hang.get("progress", {}).get("no_progress_for_s")
    reason = (
        f"{n} task(s) blocked > {limits.hang_s:g}s in handle_userfault with unanswered faults ({what}), "
        f"no progress in the tree for {quiet}s; " + ("rescued" if status is not None else "not rescued, killed")
    )
    return Verdict.HANG, reason


def _stuck(evidence, snapshot, stuck, limits) -> Tuple[Verdict, str]:
    keys = dict(stuck)
    chosen = [dict(t, stuck=keys[(t["pid"], t["tid"])]) for t in snapshot if (t["pid"], t["tid"]) in keys]
    evidence["stuck"] = {"watched_call": "the program", "blocked_tasks": chosen, "pending_uffd_messages": []}
    evidence["tasks"] = snapshot
    evidence["userfaultfds"] = [h.as_data() for h in procfs.userfaultfds(sorted({t["pid"] for t in snapshot}))]
    first = chosen[0] if chosen else {}
    reason = (
        f"{len(chosen)} task(s) stuck > {limits.stuck_s:g}s outside a uffd wait: {first.get('pid')}/"
        f"{first.get('tid')} {first.get('comm')} {first.get('stuck')} (wchan {first.get('wchan') or '?'}): "
        "killed"
    )
    return Verdict.STUCK, reason
