# SPDX-License-Identifier: GPL-2.0-only
"""Whether a workload's process tree can still move on by itself (--exec): a fault that waits long is
only a HANG when nobody will answer it, shown, not presumed.

A sign of progress, at any sample: a task outside handle_userfault is runnable or in I/O (R or D); the
tasks outside handle_userfault used CPU time since the last sample; a userfaultfd's fdinfo (pending,
total) changed; or a task outside handle_userfault sits in a timed sleep (nanosleep, clock_nanosleep),
which ends by itself: a handler that sleeps before it answers. A tree whose every task is in
handle_userfault, or whose other tasks all wait without a timeout and use no CPU, shows none.
"""

import os
from typing import Dict, List, Optional, Tuple

from . import procfs, tasks

#: System call numbers of the sleeps that end by themselves, per machine.
TIMED_SLEEPS = {
    "x86_64": {35: "nanosleep", 230: "clock_nanosleep"},
    "aarch64": {101: "nanosleep", 115: "clock_nanosleep"},
}


def timed_sleep(syscall_line: Optional[str]) -> Optional[str]:
    """The name of the timed sleep a task is in, from its /proc/PID/task/TID/syscall line, or None."""
    if not syscall_line:
        return None
    head = syscall_line.split(None, 1)[0]
    if not head.lstrip("-").isdigit():
        return None
    return TIMED_SLEEPS.get(os.uname().machine, {}).get(int(head))


class Progress:
    """When the tree last showed a sign of progress, and which."""

    def __init__(self, now: float):
        self.last = now
        self.signs: List[str] = ["the program started"]
        self._ticks: Dict[Tuple[int, int], int] = {}
        self._fdinfo: Optional[list] = None

    def sample(self, now: float, snapshot: List[dict], holders: List[procfs.UffdInfo]) -> None:
        """Look at one sample (procfs.task_evidence and the tree's userfaultfds)."""
        outside = [t for t in snapshot if not tasks.in_userfault(t)]
        signs = [
            f"{t['pid']}/{t['tid']} {t.get('comm')} {'runnable' if t['state'] == 'R' else 'in I/O (D)'}"
            for t in outside
            if t["state"] in ("R", "D")
        ]
        ticks = {}
        for t in outside:
            got = procfs.cpu_ticks(t["pid"], t["tid"])
            if got is not None:
                ticks[(t["pid"], t["tid"])] = sum(got)
        used = sum(v - self._ticks[k] for k, v in ticks.items() if k in self._ticks and v > self._ticks[k])
        if used:
            signs.append(f"{used} tick(s) of CPU time outside handle_userfault")
        self._ticks = ticks
        fdinfo = sorted((h.pid, h.fd, h.pending, h.total) for h in holders)
        if self._fdinfo is not None and fdinfo != self._fdinfo:
            signs.append("a userfaultfd's pending/total changed")
        self._fdinfo = fdinfo
        signs += [
            f"{t['pid']}/{t['tid']} {t.get('comm')} in {name}, which ends by itself"
            for t in outside
            for name in [timed_sleep(t.get("syscall"))]
            if name
        ]
        if signs:
            self.last, self.signs = now, signs

    def quiet_for(self, now: float) -> float:
        """Seconds since the last sign of progress."""
        return now - self.last

    def as_data(self, now: float) -> dict:
        """Evidence: how long the tree has shown no progress, and the last signs it showed."""
        return {
            "no_progress_for_s": round(now - self.last, 2),
            "last_signs": self.signs[:8],
            "looked_for": "a task outside handle_userfault runnable or in D, CPU time used outside "
            "handle_userfault, a change in any userfaultfd's fdinfo, a timed sleep",
        }
