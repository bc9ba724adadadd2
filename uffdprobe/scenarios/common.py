# SPDX-License-Identifier: GPL-2.0-only
"""Plumbing several scenarios share: a populated write-protected page, bounded waits on pipes."""

import os
import select
import threading
from typing import Callable, Optional, Tuple

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE, Mapping
from uffdprobe.uffd.userfaultfd import Userfaultfd
from .context import ScenarioContext
from .memkinds import allocate

PATTERN = b"uffdprobe page " + bytes(range(256)) * 15
PATTERN = PATTERN[: PAGE_SIZE // 2]


def wp_page(
    ctx: ScenarioContext,
    register: RegisterMode = RegisterMode.WP,
    features: Feature = Feature.PAGEFAULT_FLAG_WP,
    shared: Optional[bool] = None,
) -> Tuple[Userfaultfd, Mapping]:
    """A populated mapping of ctx.memory (shared or private as memkinds.allocate decides, unless `shared`
    says), registered and write-protected, handed to the supervisor."""
    uffd = Userfaultfd.open()
    uffd.api(features)
    m = allocate(ctx.memory, PATTERN, shared=shared)
    uffd.register(m.addr, m.length, register)
    uffd.writeprotect(m.addr, m.length, protect=True)
    entry = pagemap.read(m.addr)[0]
    ctx.note("pagemap_before", page_flags(entry))
    ctx.hand_over(uffd, m.addr, m.length, rescue="unprotect")
    return uffd, m


def page_flags(entry: pagemap.PageEntry) -> dict:
    """The pagemap bits a reader of the evidence cares about."""
    return {"present": entry.present, "uffd_wp": entry.uffd_wp, "exclusive": entry.exclusive, "pfn": entry.pfn}


def read_exactly(fd: int, n: int, timeout: float) -> bytes:
    """Read n bytes from a pipe within `timeout` seconds; fewer on EOF or time-out."""
    out = b""
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def reap(pid: int, timeout: float = 10.0) -> Optional[int]:
    """waitpid with a bound; still alive afterwards: SIGKILL and reap. Returns the exit code."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def fork_reader(target: int, addr: int, length: int) -> Tuple[int, int, int]:
    """Fork a process that, on a byte from the go pipe, reads `target`'s [addr, +length) by
    process_vm_readv (a read-GUP of the remote page) and writes the bytes back.

    Returns (pid, go_w, data_r); the caller closes both fds and reaps pid.
    """
    go_r, go_w = os.pipe()
    data_r, data_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(go_w), os.close(data_r)
            if read_exactly(go_r, 1, 60.0) == b"G":
                with memory.mmap_anonymous(max(length, PAGE_SIZE)) as local:
                    memory.process_vm_readv(target, local.addr, addr, length)
                    os.write(data_w, local.read(0, length))
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(go_r), os.close(data_w)
    return pid, go_w, data_r


class Bounded:
    """Run fn in a daemon thread (its memory access may block on a uffd fault); join with a bound."""

    def __init__(self, fn: Callable[[], object], name: str):
        self.result: object = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def done(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()
