# SPDX-License-Identifier: GPL-2.0-only
"""Run each scenario in a child process, watch it, classify a hang, rescue it, reap everything."""

import json
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

from . import tasks
from .loop import supervise
from .protocol import Bounds, Ending, Step
from .splat import SplatWatch
from uffdprobe.osutil import procs
from uffdprobe.uffd import messages
from uffdprobe.uffd.errors import UffdError
from uffdprobe.scenarios.context import ScenarioContext
from uffdprobe.scenarios.memkinds import SkipScenario
from uffdprobe.scenarios.registry import Scenario
from uffdprobe.scenarios.victim import VICTIM
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Result, Verdict


@dataclass
class Limits:
    """Bounds on every wait. hang_s: blocked this long on a uffd fault means HANG; spin_s: a watched
    call whose task stays R or D this long with no uffd fault pending is HANG too (it never returns)."""

    hang_s: float = 2.0
    spin_s: float = 20.0
    scenario_s: float = 120.0
    rescue_s: float = 10.0


def _child_main(scenario: Scenario, ctx: ScenarioContext) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        out: Outcome = scenario.run(ctx)
        ctx.finish(out.verdict.value, out.reason, out.evidence)
    except SkipScenario as exc:  # a precondition probed inside the child (e.g. no THP was given)
        ctx.finish(Verdict.SKIP.value, str(exc), {})
    except BaseException as exc:  # the supervisor turns this into ERROR with the traceback
        code = 3
        import traceback  # only on this path: every scenario child would import it for nothing

        try:
            ctx.finish(
                Verdict.ERROR.value,
                f"{type(exc).__name__}: {exc}",
                {"traceback": traceback.format_exc().splitlines()[-12:]},
            )
        except OSError:
            pass
    finally:
        os._exit(code)


class _Scenario:
    """A scenario as a Workload (protocol.py): a forked child that reports over a socket; a watched call
    idle for hang_s is inspected (a uffd block, or a task spinning spin_s) and rescued through the uffd
    the child handed over."""

    def __init__(
        self,
        scenario: Scenario,
        memory: str,
        params: Dict[str, Any],
        kernel: Dict[str, Any],
        limits: Limits,
        odirect_target: Optional[str],
    ):
        self.scenario, self.memory, self.params, self.kernel = scenario, memory, params, kernel
        self.limits, self.odirect_target = limits, odirect_target
        self.sock, self._child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = 0
        self.rescue_note: Optional[str] = None
        self.uffd: Optional[Userfaultfd] = None
        self.rescue_range = (0, 0)
        self.rescue_kind = "unprotect"
        self.watching: Optional[Dict[str, Any]] = None
        self.last_activity = time.monotonic()
        self.reported: Optional[dict] = None  # the child's own "result" message
        self.notes: Dict[str, Any] = {}
        self.counters: Dict[str, Any] = {}
        self.hang: Optional[Dict[str, Any]] = None
        self.closed = False
        self.states: List[Optional[str]] = []

    def receive(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            self.closed = True
            return
        msg = json.loads(data)
        kind = msg["type"]
        self.last_activity = time.monotonic()
        if kind == "uffd" and fds:
            self.uffd = Userfaultfd(fds[0])
            self.rescue_range = (msg["start"], msg["length"])
            self.rescue_kind = msg["rescue"]
        elif kind == "watch":
            self.watching = msg
        elif kind == "unwatch":
            self.watching = None
        elif kind == "progress":
            self.counters = msg["counters"]
        elif kind == "note":
            self.notes[msg["key"]] = msg["value"]
        elif kind == "result":
            self.reported = msg

    def inspect(self) -> Optional[Dict[str, Any]]:
        """Evidence of a uffd block (pending message or a task in handle_userfault), else None."""
        all_tasks = tasks.all_tasks(self.pid)
        blocked = [t for t in all_tasks if tasks.in_userfault(t)]
        pending = []
        if self.uffd is not None:
            try:
                pending = [messages.as_data(m) for m in self.uffd.read()]
            except UffdError as exc:
                pending = [f"read failed: {exc}"]
        if not blocked and not pending:
            return None
        watched = self.watching or {}
        return {
            "watched_call": watched.get("what"),
            "blocked_tasks": blocked,
            "pending_uffd_messages": pending,
            "all_task_states": {f"{t['pid']}/{t['tid']}": t["state"] for t in all_tasks},
            "other_tasks": [t for t in all_tasks if t not in blocked],
            "counters": dict(self.counters),
        }

    def spinning(self, spin_s: float) -> Optional[Dict[str, Any]]:
        """Evidence when the watched task has stayed runnable or in D, outside handle_userfault, for
        spin_s seconds without progress: the call never returns (a livelock or a non-uffd wedge)."""
        pid, tid = self.watching["pid"], self.watching["tid"]
        state = tasks.task_state(pid, tid)
        self.states.append(state)
        if state not in ("R", "D"):
            self.states.clear()
        if not self.states or time.monotonic() - self.last_activity < spin_s:
            return None
        others = [tasks.described_off_cpu(p, t) for p, t in tasks.thread_ids(self.pid) if t != tid]
        return {
            "watched_call": self.watching.get("what"),
            "blocked_tasks": [],
            "pending_uffd_messages": [],
            "spinning_task": tasks.describe(pid, tid),
            "states_sampled": "".join(self.states),
            "all_task_states": {f"{t['pid']}/{t['tid']}": t["state"] for t in tasks.all_tasks(self.pid)},
            "other_tasks": others,
            "spin_s": spin_s,
            "counters": dict(self.counters),
        }

    def rescue(self) -> str:
        """Answer the fault through the child's own uffd so its blocked task can finish."""
        if (self.watching or {}).get("rescue") == "kill":
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the child made itself a group leader first thing
            except ProcessLookupError:
                pass
            return "killed the process group (SIGKILL): no uffd answer can end this call"
        if self.uffd is None:
            return "no uffd handed over: cannot rescue"
        start, length = self.rescue_range
        try:
            if self.rescue_kind == "unregister":
                self.uffd.unregister(start, length)
            else:
                self.uffd.writeprotect(start, length, protect=False)
                self.uffd.wake(start, length)
            return f"{self.rescue_kind} [{start:#x}, +{length:#x})"
        except UffdError as exc:
            return f"rescue failed: {exc}"

    def start(self) -> int:
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            _child_main(
                self.scenario,
                ScenarioContext(self._child_sock, self.memory, self.params, self.odirect_target, self.scenario.race),
            )
        self._child_sock.close()
        self.pid = pid
        return pid

    def wait(self, seconds: float) -> bool:
        if self.watching is not None and self.hang is None:  # wake when the watched call has idled hang_s
            idle = time.monotonic() - self.last_activity
            if idle < self.limits.hang_s:
                seconds = min(seconds, self.limits.hang_s - idle)
        ready, _, _ = select.select([self.sock], [], [], max(0.0, seconds))
        if ready:
            self.receive()
        return self.reported is not None or self.closed

    def tick(self, now: float) -> Step:
        idle = time.monotonic() - self.last_activity
        if self.watching is None or self.hang is not None or idle < self.limits.hang_s:
            return Step.GO_ON
        evidence = self.inspect() or self.spinning(self.watching.get("spin_s", self.limits.spin_s))
        if evidence is None:
            return Step.GO_ON
        if isinstance(self.notes.get("race"), dict):  # racy.repeat's try under way
            evidence["race"] = dict(self.notes["race"])
        self.hang = evidence
        self.rescue_note = self.rescue()
        return Step.RESCUED

    def result(self, ending: Ending) -> Result:
        stopped = ending.stopped
        assert stopped is not None, "a forked child always starts"
        _end_victim(self.notes.get(VICTIM))
        if not stopped.reaped:
            # SIGKILL did not end it within 10 s: an unkillable task is a kernel bug; stop waiting.
            reaped: Dict[str, Any] = {"exit": None, "killed": True, "unkillable": tasks.all_tasks(self.pid)}
        else:
            reaped = {"exit": stopped.exit, "killed": stopped.killed}
        return _decide(self, not ending.ended, ending.at_bound, reaped, ending.took)

    def rows(self, judged: Result) -> List[Result]:
        return [judged]

    def close(self) -> None:
        self.sock.close()
        self._child_sock.close()
        if self.uffd is not None:
            self.uffd.close()


def _end_victim(about: Any) -> None:
    """A scenario's victim (scenarios/victim.py) lives in a session of its own, out of reach of the group
    stop: unless the scenario kept it (its watched thread died in the kernel), it ends with the scenario,
    also when the scenario child was killed before it could reap it. Only the very process noted (same start)."""
    if not isinstance(about, dict) or about.get("kept") or not isinstance(about.get("pid"), int):
        return
    pid = about["pid"]
    if about.get("started") is None or procs.started(pid) != about["started"]:
        return  # gone (reaped by the scenario, as it normally is), or the pid is another process's now
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def run_one(
    scenario: Scenario,
    memory: str,
    params: Dict[str, Any],
    kernel: Dict[str, Any],
    limits: Limits,
    odirect_target: Optional[str] = None,
    splats: Optional[SplatWatch] = None,
) -> Result:
    """Fork, run, watch, rescue, reap; exactly one Result (with `splats`, judged by the kernel log too)."""
    policy = _Scenario(scenario, memory, params, kernel, limits, odirect_target)
    try:
        return supervise(
            policy, Bounds(total_s=limits.scenario_s, rescue_s=limits.rescue_s, poll_s=0.5, grace_s=5.0), splats
        )[0]
    finally:
        policy.close()


def _decide(
    w: _Scenario, timed_out: bool, stuck: Optional[List[dict]], reaped: Dict[str, Any], duration: float
) -> Result:
    """The one verdict: a rescued block is HANG; otherwise the child's own conclusion, or ERROR."""
    limits = w.limits
    child = w.reported or {}
    evidence: Dict[str, Any] = dict(w.notes)
    evidence.update(child.get("evidence", {}))
    evidence["exit"] = reaped
    if w.hang is not None:
        evidence["hang"] = w.hang
        evidence["rescue"] = w.rescue_note
        if child:
            evidence["after_rescue"] = {"verdict": child.get("verdict"), "reason": child.get("reason")}
        else:
            evidence["after_rescue"] = "the child did not finish after the rescue: killed and reaped"
        blocked = w.hang["blocked_tasks"]
        what = w.hang["watched_call"] or "the workload"
        if "spinning_task" in w.hang:
            state = w.hang["spinning_task"]["state"]
            reason = (
                f"{what} never returned: its task stayed {state} for > {w.hang['spin_s']:g}s outside "
                "handle_userfault with no uffd fault pending (a kernel livelock or wedge)"
            )
        else:
            where = f"{len(blocked)} task(s) in handle_userfault" if blocked else "a uffd fault pending"
            reason = f"{what} blocked > {limits.hang_s:g}s: {where}, nobody to answer"
        race = w.hang.get("race")
        if race:  # the try racy.repeat was in when the hang was caught
            evidence["race"] = {**race, "tries_made": race["try"], "hit_on_try": race["try"], "stopped_by": "hit"}
            reason += f" (hung on try {race['try']} of {race['tries']})"
        verdict = Verdict.HANG
    elif child:
        verdict, reason = Verdict(child["verdict"]), child["reason"]
    elif timed_out:
        verdict = Verdict.ERROR
        reason = f"no verdict within {limits.scenario_s:g}s and no uffd fault pending: killed"
        evidence["stuck_tasks"] = stuck
    else:
        verdict = Verdict.ERROR
        reason = f"child ended without a verdict (exit {reaped.get('exit')})"
    return Result(w.scenario.name, w.memory, verdict, reason, evidence, w.kernel, w.params, round(duration, 3))


def run_many(
    plan: Iterable[tuple],
    kernel: Dict[str, Any],
    limits: Limits,
    odirect_target: Optional[str],
    on_result: Callable[[Result], None],
    splats: Optional[SplatWatch] = None,
) -> List[Result]:
    """Run (scenario, memory, params, skip_reason) items in order; on_result sees each as it lands. With
    `splats`, the kernel log around each run judges it too (WARN/OOPS for a splat while it ran)."""
    results = []
    for scenario, memory, params, skip in plan:
        if skip:
            res = Result(scenario.name, memory, Verdict.SKIP, skip, {}, kernel, params, 0.0)
        else:
            res = run_one(scenario, memory, params, kernel, limits, odirect_target, splats)
        on_result(res)
        results.append(res)
    return results
