# SPDX-License-Identifier: GPL-2.0-only
"""The one supervisor loop every Workload (protocol.py) runs under: the kernel-log window around it, its
bound (shortened by a rescue), the wait between ticks, its tasks read at the bound, and its process group
stopped on every way out (SIGKILL unless it ended by itself, then Bounds.grace_s for its leader)."""

import signal
import subprocess
import time
from typing import List, Optional

from uffdprobe.osutil import children
from uffdprobe.verdicts import Result
from .protocol import Bounds, Ending, Leader, Step, Workload
from .splat import SplatWatch


def supervise(workload: Workload, bounds: Bounds, splats: Optional[SplatWatch] = None) -> List[Result]:
    """Start `workload`, watch it to its end or its bound, stop its group; its rows, the first judged by
    what the kernel logged meanwhile (with `splats`: WARN/OOPS for a splat while it ran)."""
    window = splats.start() if splats is not None else None
    started = time.monotonic()
    leader = workload.start()
    ending = Ending() if leader is None else _watch(workload, leader, bounds, started)
    ending.took = round(time.monotonic() - started, 3)
    row = workload.result(ending)
    if splats is not None and window is not None:
        row = splats.judge(row, window)
    return workload.rows(row)


def _watch(workload: Workload, leader: Leader, bounds: Bounds, started: float) -> Ending:
    pid = leader if isinstance(leader, int) else leader.pid
    deadline = started + bounds.total_s
    ending = Ending()
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                ending.ended = workload.wait(0.0)
                if not ending.ended:
                    ending.timed_out = True
                    ending.at_bound = bounds.snapshot(pid)
                break
            if workload.wait(min(deadline - now, bounds.poll_s)):
                ending.ended = True
                break
            now = time.monotonic()
            if now >= deadline:
                continue
            step = workload.tick(now)
            if step is Step.STOP:
                break
            if step is Step.RESCUED:
                deadline = min(deadline, time.monotonic() + bounds.rescue_s)
    finally:
        ending.stopped = children.stop_group(
            leader, first=None if ending.ended else signal.SIGKILL, grace=bounds.grace_s if ending.ended else 0.0
        )
    return ending


def exited(proc: Optional[subprocess.Popen], seconds: float) -> bool:
    """Whether a program ends within `seconds`: the wait() of a Workload that is one Popen."""
    assert proc is not None, "start() first"
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False
