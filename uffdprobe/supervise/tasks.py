# SPDX-License-Identifier: GPL-2.0-only
"""What a blocked task is doing: state, wchan and kernel stack from /proc, as evidence."""

import os
from typing import Dict, List, Optional, Tuple

from uffdprobe.osutil.procs import stat as proc_stat


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError as exc:
        return None if exc.errno is None else f"<unreadable: {os.strerror(exc.errno)}>"


def task_state(pid: int, tid: int) -> Optional[str]:
    """The one-letter state from /proc/PID/task/TID/stat (R, S, D, ...)."""
    fields = proc_stat(f"/proc/{pid}/task/{tid}/stat")
    return fields[0] if fields else None


def describe(pid: int, tid: int) -> Dict[str, object]:
    """State, wchan and kernel stack (when readable) of one task."""
    stack = _read(f"/proc/{pid}/task/{tid}/stack")
    return {
        "pid": pid,
        "tid": tid,
        "comm": _read(f"/proc/{pid}/task/{tid}/comm"),
        "state": task_state(pid, tid),
        "wchan": _read(f"/proc/{pid}/task/{tid}/wchan"),
        "stack": stack.splitlines() if stack and not stack.startswith("<") else stack,
    }


def described_off_cpu(pid: int, tid: int, tries: int = 20, pause_s: float = 0.05) -> Dict[str, object]:
    """describe(), sampled up to `tries` times until the kernel stack reads non-empty: a task running on
    another CPU shows no stack and no wchan, so a spinning task is caught while it is scheduled out."""
    import time

    info = describe(pid, tid)
    for _ in range(tries - 1):
        if info.get("stack") or info.get("state") not in ("R",):
            break
        time.sleep(pause_s)
        info = describe(pid, tid)
    return info


def in_userfault(info: Dict[str, object]) -> bool:
    """True when wchan or the kernel stack shows the task waiting in handle_userfault."""
    stack = info.get("stack")
    frames = stack if isinstance(stack, list) else []
    return info.get("wchan") == "handle_userfault" or any("handle_userfault" in f for f in frames)


def family(pid: int) -> List[int]:
    """`pid` and all its descendants that still exist."""
    import psutil  # only when a hang is inspected: a guest run that never hangs never pays for psutil

    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


def thread_ids(pid: int) -> List[Tuple[int, int]]:
    """(pid, tid) of every thread of `pid` and of its descendants that still exist."""
    out = []
    for p in family(pid):
        try:
            out += [(p, t) for t in sorted(int(t) for t in os.listdir(f"/proc/{p}/task"))]
        except OSError:
            continue
    return out


def all_tasks(pid: int) -> List[Dict[str, object]]:
    """describe() for every thread of `pid` and of its descendants."""
    return [describe(p, t) for p, t in thread_ids(pid)]
