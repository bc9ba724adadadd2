# SPDX-License-Identifier: GPL-2.0-only
"""What /proc says of processes, read without psutil (importing it costs a guest's run about 0.4 s under
TCG): one process's or task's stat fields, the table of every process (state, parent, group, start), the
processes below some, when one started, and whether the owner of something named after its pid is gone.
"""

import os
import time
from typing import Dict, Iterable, List, NamedTuple, Optional


class Proc(NamedTuple):
    """One process as /proc/PID/stat gives it: state letter, parent pid, process group, start (clock ticks
    after boot: with the pid, what tells a process from a later one that reuses its pid)."""

    state: str
    ppid: int
    pgrp: int
    started: int


def stat(path: str) -> Optional[List[str]]:
    """The fields of a /proc/PID[/task/TID]/stat after `(comm)`, from the state on (stat(5) field 3 is [0]);
    None when the process is gone. comm may hold ')' and spaces: split after the last ')'."""
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def table() -> Dict[int, Proc]:
    """Every process now, zombies included (state 'Z'): pid -> Proc."""
    out: Dict[int, Proc] = {}
    for name in os.listdir("/proc"):
        fields = stat(f"/proc/{name}/stat") if name.isdigit() else None
        if fields and len(fields) > 19:
            out[int(name)] = Proc(fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    return out


def descendants(roots: Iterable[int], procs: Dict[int, Proc]) -> Dict[int, Proc]:
    """Every live (not zombie) process of `procs` below one of `roots`, nearest first."""
    found: Dict[int, Proc] = {}
    frontier = set(roots)
    while frontier:
        below = {pid for pid, p in procs.items() if p.ppid in frontier and pid not in found and p.state != "Z"}
        found.update({pid: procs[pid] for pid in sorted(below)})
        frontier = below
    return found


def started(pid: int) -> Optional[int]:
    """Process `pid`'s start in clock ticks after boot (with the pid, what tells it from a later process that
    reuses the pid), or None when it is gone."""
    fields = stat(f"/proc/{pid}/stat")
    return int(fields[19]) if fields and len(fields) > 19 else None


def start_time(pid: int) -> Optional[float]:
    """When process `pid` started (seconds since the epoch), or None when it is gone."""
    fields = stat(f"/proc/{pid}/stat")
    if not fields or len(fields) < 20:
        return None
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError):
        return None
    return time.time() - uptime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def owner_gone(pid: int, made_at: Optional[float] = None) -> bool:
    """Whether what process `pid` left behind (a temporary folder or lock note named after it, made at
    `made_at` seconds since the epoch when known) is nobody's any more: no process `pid`, or one started
    after it was made (the pid was reused). Our own pid is never gone; a process we may not see is not."""
    if pid == os.getpid():
        return False
    started = start_time(pid)
    if started is None:
        return not os.path.exists(f"/proc/{pid}")
    return made_at is not None and started > made_at + 1.0
