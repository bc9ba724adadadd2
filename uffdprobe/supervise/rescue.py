# SPDX-License-Identifier: GPL-2.0-only
"""Rescue a workload stuck on its own userfaultfd: take a duplicate of the descriptor with
pidfd_getfd(2) (Linux 5.6+), read the fault messages nobody read, and answer each one (write-protect
fault: un-protect; missing: a zero page; anything else: wake), so the blocked task goes on.

Reading from the duplicate takes the message away from the workload's own reader: that is the point,
the reader is the task that is stuck."""

import errno
import os
from typing import List, Tuple

from uffdprobe.uffd import messages
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.userfaultfd import Userfaultfd
from . import procfs


def _answer(uffd: Userfaultfd, pid: int, msg: messages.Message) -> str:
    """Resolve one message on the workload's behalf; what was done, in words."""
    if not isinstance(msg, messages.PageFault):
        return f"{messages.as_data(msg)['event']}: nothing to answer"
    size = procfs.page_size_at(pid, msg.address)
    page = msg.address & ~(size - 1)
    try:
        if msg.is_wp:
            uffd.writeprotect(page, size, protect=False)  # wakes the faulting task
            return f"WP fault at {msg.address:#x}: UFFDIO_WRITEPROTECT mode 0 on [{page:#x}, +{size:#x})"
        if not msg.flags & messages.PageFaultFlag.MINOR:
            try:
                uffd.zeropage(page, size)
                return f"MISSING fault at {msg.address:#x}: UFFDIO_ZEROPAGE [{page:#x}, +{size:#x})"
            except UffdError as exc:  # hugetlb has no zero page, a racing fill made it EEXIST: wake
                if exc.errno not in (errno.EINVAL, errno.EEXIST, errno.ENOENT):
                    raise
        uffd.wake(page, size)
        return f"fault at {msg.address:#x}: UFFDIO_WAKE [{page:#x}, +{size:#x})"
    except UffdError as exc:
        return f"fault at {msg.address:#x}: answering failed: {exc}"


def answer_pending(holders: List[procfs.UffdInfo], wait_s: float = 0.2) -> Tuple[List[dict], List[str]]:
    """For each userfaultfd with unanswered faults: duplicate it, read what is pending, answer it.
    Returns the messages read (as data) and one line per action or failure."""
    read: List[dict] = []
    actions: List[str] = []
    for info in holders:
        if not info.unanswered:
            continue
        try:
            uffd = Userfaultfd.take(info.pid, info.fd)
        except OSError as exc:
            actions.append(f"pid {info.pid} fd {info.fd}: {exc.strerror or exc}")
            continue
        dup = uffd.fileno()
        with uffd:
            blocking = os.get_blocking(dup)
            try:  # the file (its flags too) is the workload's: non-blocking only while we read
                os.set_blocking(dup, False)
                msgs = uffd.read() if uffd.poll(wait_s) else []
            except UffdError as exc:
                actions.append(f"pid {info.pid} fd {info.fd}: reading the duplicate failed: {exc}")
                continue
            finally:
                os.set_blocking(dup, blocking)
            if not msgs:
                actions.append(
                    f"pid {info.pid} fd {info.fd}: no unread message (read by its own reader, or by "
                    "this rescue through another holder of the same userfaultfd)"
                )
            for msg in msgs:
                read.append(messages.as_data(msg))
                actions.append(f"pid {info.pid} fd {info.fd}: {_answer(uffd, info.pid, msg)}")
    return read, actions
