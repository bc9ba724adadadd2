# SPDX-License-Identifier: GPL-2.0-only
"""What /proc says about a workload's process tree, as evidence: its userfaultfds (found by their
anon_inode:[userfaultfd] fd links, counted by their fdinfo), each task's state, CPU time, syscall."""

import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from uffdprobe.osutil.procs import stat as proc_stat
from . import tasks

#: readlink of a userfaultfd's /proc/PID/fd/FD.
UFFD_LINK = "anon_inode:[userfaultfd]"


@dataclass
class UffdInfo:
    """One userfaultfd descriptor of the workload and its fdinfo: `pending` faults nobody has read yet,
    `total` faults waiting for an answer (read or not), `api` the API/features/ioctls line."""

    pid: int
    fd: int
    pending: Optional[int]
    total: Optional[int]
    api: Optional[str]
    flags: Optional[str]

    @property
    def unanswered(self) -> bool:
        return bool(self.pending) or bool(self.total)

    def as_data(self) -> dict:
        return asdict(self)


def _fdinfo(pid: int, fd: int) -> Dict[str, str]:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def userfaultfds(pids: List[int]) -> List[UffdInfo]:
    """Every userfaultfd open in `pids` with its fdinfo counts; a descriptor shared by several processes
    (a fork, SCM_RIGHTS) appears once per holder."""
    out = []
    for pid in pids:
        try:
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != UFFD_LINK:
                    continue
            except OSError:
                continue
            info = _fdinfo(pid, fd)
            out.append(
                UffdInfo(
                    pid, fd, _int(info.get("pending")), _int(info.get("total")), info.get("API"), info.get("flags")
                )
            )
    return out


def cpu_ticks(pid: int, tid: int) -> Optional[tuple]:
    """(utime, stime) in clock ticks from /proc/PID/task/TID/stat, None when the task is gone."""
    fields = proc_stat(f"/proc/{pid}/task/{tid}/stat")
    return (int(fields[11]), int(fields[12])) if fields else None  # stat(5) fields 14 and 15


def syscall(pid: int, tid: int) -> Optional[str]:
    """/proc/PID/task/TID/syscall: the system call a blocked task is in, with its arguments (a kernel-mode
    uffd fault inside pwrite() shows pwrite's buffer address here)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            return f.read().strip()
    except OSError:
        return None


def task_evidence(pid: int) -> List[dict]:
    """tasks.describe() of every task of `pid` and its descendants, plus the syscall each is in."""
    out = []
    for t in tasks.all_tasks(pid):
        t = dict(t)
        t["syscall"] = syscall(t["pid"], t["tid"])
        if t.get("wchan") is None:
            t["wchan"] = ""
        if isinstance(t.get("stack"), str):  # "" for a task on a CPU, "<unreadable: ...>" without root
            t["stack"] = [t["stack"]] if t["stack"] else []
        out.append(t)
    return out


def page_size_at(pid: int, address: int) -> int:
    """The kernel page size of the mapping holding `address` in `pid` (smaps KernelPageSize; 4 KiB when
    it cannot be read), so a rescue answers a hugetlb fault with a whole huge page."""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            inside = False
            for line in f:
                head = line.split(None, 1)[0]
                if "-" in head and ":" not in head:
                    start, _, end = head.partition("-")
                    inside = int(start, 16) <= address < int(end, 16)
                elif inside and head == "KernelPageSize:":
                    return int(line.split()[1]) << 10
    except (OSError, ValueError):
        pass
    return os.sysconf("SC_PAGE_SIZE")
