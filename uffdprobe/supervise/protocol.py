# SPDX-License-Identifier: GPL-2.0-only
"""The seam between the one supervisor loop (loop.py) and what it supervises: a Workload, one module per
policy. supervisor.py runs a built-in or user scenario in a forked child that talks over a socket;
workload.py runs any program (`--exec`) and judges its process tree from /proc; kselftest.py runs one of
the kernel's selftest binaries and reads its TAP. The loop owns the bound, the cadence, the kernel-log
window, the tasks at the bound and stopping the process group; a policy owns how it starts, what it
looks at each tick, and the rows it makes of how the run ended.
"""

import enum
import subprocess
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Protocol, Union

from uffdprobe.osutil.children import Stopped
from uffdprobe.verdicts import Result
from . import tasks

#: What the loop watches and stops: a Popen, or the pid of our own forked child (a group leader either way).
Leader = Union[int, subprocess.Popen]


class Step(enum.Enum):
    """What a policy's tick decided."""

    GO_ON = "go on"
    RESCUED = "rescued"  # it answered the workload's faults: the run ends at most rescue_s from now
    STOP = "stop"  # it has its verdict (STUCK): stop the workload now


@dataclass
class Bounds:
    """The loop's bounds (seconds): total_s for the whole run, rescue_s after a rescue, poll_s the longest
    wait between ticks, grace_s for a workload that ended (or answered) by itself to be gone before its
    group is killed; `snapshot` reads its tasks from /proc at the bound, before it is killed."""

    total_s: float
    rescue_s: float = 0.0
    poll_s: float = 0.25
    grace_s: float = 0.0
    snapshot: Callable[[int], List[dict]] = field(default=tasks.all_tasks)


@dataclass
class Ending:
    """How a supervised run ended. ended: it finished (or answered) by itself; timed_out: the bound came
    first; neither: a tick stopped it, or it never started (stopped None). at_bound: its tasks at the
    bound (Bounds.snapshot), else None; took: seconds from start() to its group stopped."""

    ended: bool = False
    timed_out: bool = False
    at_bound: Optional[List[dict]] = None
    stopped: Optional[Stopped] = None
    took: float = 0.0


class Workload(Protocol):
    """One supervised run. The loop calls start(); then wait() and tick() in turn until wait() says it
    ended, the bound passes or a tick says STOP; stops the group; result() is the run's own row (the
    kernel log around the run judges it), rows() every row of the run, that judged row first."""

    def start(self) -> Optional[Leader]:
        """Start it in a process group of its own: its leader, or None when it could not be started."""
        ...

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for it (its exit, a message); True once it ended or answered by itself."""
        ...

    def tick(self, now: float) -> Step:
        """Look at it (its tasks, its faults) between waits; what to do next."""
        ...

    def result(self, ending: Ending) -> Result:
        """The run's own row, from how it ended."""
        ...

    def rows(self, judged: Result) -> List[Result]:
        """Every row of the run, `judged` (result() after the kernel log's judgement) first."""
        ...
