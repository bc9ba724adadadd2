# SPDX-License-Identifier: GPL-2.0-only
"""A scenario's work in a process of its own, for a question whose wrong answer is a kernel BUG.

A BUG inside a page fault kills the faulting thread while it holds the page-table lock of the page it
faulted on. Nothing else may touch that page table afterwards: a read of /proc/PID/pagemap or the
process's own exit (exit_mmap) would spin on the dead thread's lock with preemption off, until the
soft-lockup watchdog panics the guest. So the work runs in a forked victim: its own session (the
supervisor's process-group stop does not reach it), no inherited descriptor but its report pipe. It
reports JSON fields as it goes; "watch_tid" names the thread about to take the risky fault, which
reports "watch_done" once past it (a thread gone before that died in the kernel); "done" ends the report. A victim whose watched thread vanished is left asleep for the rest of the boot; every
other victim is killed and reaped. What the dead thread held stays held: a swapoff that has to bring its
page back waits forever, so the scenarios using a victim come after every other swap user in the table.
"""

import json
import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from uffdprobe.osutil import procs

from .context import ScenarioContext
from .memkinds import SkipScenario

#: The note that tells the supervisor of a scenario's victim: its pid, its start (clock ticks), kept or not.
VICTIM = "victim"

Report = Callable[..., None]


@dataclass
class Victim:
    """What a victim reported, and how it ended: "done", "error" (its work raised), "thread_gone" (the
    watched thread died in the kernel, the process lives on), "stuck" (the watched thread did not finish
    in time), "silent" (no report in time)."""

    pid: int
    state: str
    facts: Dict[str, Any] = field(default_factory=dict)


def run(
    work: Callable[[Report], None], setup_s: float, watch_s: float, ctx: Optional[ScenarioContext] = None
) -> Victim:
    """Run work(report) in a victim; wait `setup_s` for its report to name a watched thread, then `watch_s`
    for "done". SkipScenario raised by the work is raised here. With `ctx`, the supervisor is told of the
    victim (note VICTIM) as soon as it exists, and whether it is kept: one it was not told to keep, it ends
    when the scenario ends, however the scenario ended (supervise/supervisor.py)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _victim(work, wfd)  # never returns
    os.close(wfd)
    about: Dict[str, Any] = {"pid": pid, "started": procs.started(pid)}
    if ctx is not None:
        ctx.note(VICTIM, about)
    try:
        v = _collect(pid, rfd, setup_s, watch_s)
    finally:
        os.close(rfd)
    if v.state != "thread_gone":
        v.facts["victim_reaped"] = _reap(pid)
    elif ctx is not None:
        ctx.note(VICTIM, {**about, "kept": True})
    if "skip" in v.facts:
        raise SkipScenario(v.facts["skip"])
    return v


def _collect(pid: int, rfd: int, setup_s: float, watch_s: float) -> Victim:
    facts: Dict[str, Any] = {"victim_pid": pid}
    buf = [b""]
    deadline = time.monotonic() + setup_s
    watching = False
    while True:
        if "done" in facts or "skip" in facts:
            return Victim(pid, "done", facts)
        if "error" in facts:
            return Victim(pid, "error", facts)
        if watching and "watch_done" not in facts and not os.path.exists(f"/proc/{pid}/task/{facts['watch_tid']}"):
            if _drain(rfd, buf, facts, 0.0):  # what it wrote before it ended may still be in the pipe
                continue
            facts["watched_thread_gone"] = True
            return Victim(pid, "thread_gone", facts)
        left = deadline - time.monotonic()
        if left <= 0:
            return Victim(pid, "stuck" if watching else "silent", facts)
        _drain(rfd, buf, facts, min(left, 0.2))
        if "eof" in facts:
            return Victim(pid, "silent", facts)
        if "watch_tid" in facts and not watching:
            watching = True
            deadline = time.monotonic() + watch_s


def _drain(rfd: int, buf: list, facts: Dict[str, Any], timeout: float) -> bool:
    """Read what the pipe has (waiting up to `timeout` for the first bytes) into `facts`; whether it had any."""
    got = False
    while select.select([rfd], [], [], timeout)[0]:
        chunk = os.read(rfd, 65536)
        if not chunk:
            facts.setdefault("eof", True)
            return got
        got = True
        timeout = 0.0
        *lines, buf[0] = (buf[0] + chunk).split(b"\n")
        for line in lines:
            facts.update(json.loads(line))
    return got


def _reap(pid: int, seconds: float = 10.0) -> bool:
    """SIGKILL and wait for the victim, bounded; whether it was reaped."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
        time.sleep(0.05)
    return False


def _victim(work: Callable[[Report], None], wfd: int) -> None:
    def report(**fields: Any) -> None:
        os.write(wfd, json.dumps(fields).encode() + b"\n")

    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2 and int(name) != wfd:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        work(report)
    except SkipScenario as exc:
        report(skip=str(exc))
    except BaseException as exc:  # noqa: BLE001 - the parent gets every failure as its evidence
        report(error=f"{type(exc).__name__}: {exc}")
    while True:  # asleep until the parent kills it; it never exits by itself (see the module docstring)
        signal.pause()
