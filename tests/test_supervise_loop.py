# SPDX-License-Identifier: GPL-2.0-only
"""The one supervisor loop (supervise/loop.py) with real processes on the running kernel: a tree that
sleeps past its bound is read from /proc at the bound and its whole group killed; one that exits is
reaped with its status and its policy's rows come back, the first judged by the kernel log; a rescue
shortens the bound, a STOP ends the run at once. The policy here is the Protocol's smallest: a shell."""

import os
import signal
import subprocess
import time
from typing import List, Optional

import pytest

from uffdprobe.supervise import workload
from uffdprobe.supervise.loop import exited, supervise
from uffdprobe.supervise.protocol import Bounds, Ending, Step
from uffdprobe.supervise.splat import SplatWatch
from uffdprobe.verdicts import Result, Verdict

pytestmark = pytest.mark.timeout(60)


class Shell:
    """`sh -c SCRIPT` as a Workload; its rows: one the Ending is kept in, one more after the judged one."""

    def __init__(self, script: str, steps: Optional[List[Step]] = None):
        self.script, self.steps = script, list(steps or [])
        self.proc: Optional[subprocess.Popen] = None
        self.ending: Optional[Ending] = None
        self.ticks = 0

    def start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(["sh", "-c", self.script], start_new_session=True)
        return self.proc

    def wait(self, seconds: float) -> bool:
        return exited(self.proc, seconds)

    def tick(self, now: float) -> Step:
        self.ticks += 1
        return self.steps.pop(0) if self.steps else Step.GO_ON

    def result(self, ending: Ending) -> Result:
        self.ending = ending
        return Result("shell", "-", Verdict.PASS, "whatever it did", {}, {}, {}, ending.took)

    def rows(self, judged: Result) -> List[Result]:
        return [judged, Result("shell: more", "-", Verdict.PASS, "a second row", {}, {}, {}, None)]


def _group_gone(pgid: int) -> bool:
    """No process of group `pgid` is left but zombies (a killed orphan waits for init to reap it)."""
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                state, _ppid, pgrp = f.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return False
    return True


def test_a_tree_sleeping_past_its_bound_is_read_at_the_bound_and_its_group_killed():
    shell = Shell("sleep 30 & sleep 30; wait")
    started = time.monotonic()
    rows = supervise(shell, Bounds(total_s=1.0))
    took = time.monotonic() - started
    ending = shell.ending
    assert ending is not None and ending.timed_out and not ending.ended
    assert 1.0 <= took < 12.0 and 1.0 <= ending.took <= took + 0.001  # took: rounded to ms
    assert shell.ticks >= 2  # every poll_s (0.25 s) until the bound
    comms = sorted(t["comm"] for t in ending.at_bound)
    assert comms == ["sh", "sleep", "sleep"], ending.at_bound  # the shell and both its children, from /proc
    assert {t["state"] for t in ending.at_bound} == {"S"}
    assert ending.stopped.reaped and ending.stopped.exit == -signal.SIGKILL
    assert _group_gone(shell.proc.pid)  # the backgrounded sleep too, not only the leader
    assert [r.scenario for r in rows] == ["shell", "shell: more"]


def test_a_tree_that_exits_is_reaped_with_its_status_and_its_first_row_judged():
    shell = Shell("sleep 0.3; exit 7")
    with SplatWatch(from_start=False) as splats:
        rows = supervise(shell, Bounds(total_s=30.0), splats)
    ending = shell.ending
    assert ending.ended and not ending.timed_out and ending.at_bound is None
    assert ending.stopped.exit == 7 and not ending.stopped.killed
    assert 0.3 <= ending.took < 10.0
    assert "kernel_log" in rows[0].evidence and "kernel_log" not in rows[1].evidence
    assert _group_gone(shell.proc.pid)


def test_a_rescue_shortens_the_bound_and_a_stop_ends_at_once():
    rescued = Shell("sleep 30", [Step.RESCUED])
    supervise(rescued, Bounds(total_s=30.0, rescue_s=0.5))
    assert rescued.ending.timed_out and rescued.ending.took < 5.0
    stopped = Shell("sleep 30", [Step.GO_ON, Step.STOP])
    supervise(stopped, Bounds(total_s=30.0))
    ending = stopped.ending
    assert not ending.timed_out and not ending.ended and ending.at_bound is None
    assert stopped.ticks == 2 and ending.took < 5.0 and ending.stopped.exit == -signal.SIGKILL


def test_a_program_that_cannot_start_is_the_policys_own_row():
    r = workload.run_program("nothing", ["/nonexistent/program"], {}, workload.ExecLimits(total_s=5.0))
    assert r.verdict is Verdict.ERROR and "cannot run /nonexistent/program" in r.reason


def test_an_exec_program_past_its_bound_is_an_error_naming_the_bound():
    r = workload.run_program("sleeper", ["sleep", "30"], {}, workload.ExecLimits(total_s=1.0, stuck_s=30.0))
    assert r.verdict is Verdict.ERROR
    assert r.reason.startswith("still running after 1s with no task stuck (") and " S): killed" in r.reason
    assert [t["comm"] for t in r.evidence["tasks"]] == ["sleep"] and r.evidence["exit"]["killed"]


def _sleeping_victim(ctx):
    """A scenario whose victim (scenarios/victim.py) never reports done: the scenario's bound ends it."""
    from uffdprobe.scenarios import victim

    def work(report):
        report(watch_tid=os.getpid())  # its main thread, asleep below: "watched", never done
        time.sleep(120)

    victim.run(work, setup_s=30.0, watch_s=120.0, ctx=ctx)


def test_a_scenario_killed_at_its_bound_takes_its_victim_along():
    """A victim sits in a session of its own, out of the group stop's reach; the supervisor ends it with the
    scenario (here killed at its 3 s bound before it could reap its victim), by the pid the scenario noted."""
    from uffdprobe.scenarios.registry import Scenario
    from uffdprobe.supervise.supervisor import Limits, run_one

    s = Scenario("victim-left", "does a killed scenario's victim end?", _sleeping_victim, needs=(), test_only=True)
    r = run_one(s, "anon-4k", {}, {}, Limits(scenario_s=3.0))
    assert r.verdict is Verdict.ERROR and "no verdict within 3s" in r.reason, r
    about = r.evidence["victim"]
    assert about["pid"] > 0 and about["started"] is not None and not about.get("kept"), about
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(about["pid"], about["started"]):
        time.sleep(0.05)
    assert not _alive(about["pid"], about["started"]), f"victim {about['pid']} outlived its scenario"


def _alive(pid: int, started: int) -> bool:
    from uffdprobe.osutil import procs

    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and procs.started(pid) == started
