# SPDX-License-Identifier: GPL-2.0-only
"""umap's page buffer in miniature: a MISSING|WP region filled on fault from an O_DIRECT store, evictors
that write-protect a dirty page, pwrite() it from the page itself and drop it (umap-evict's machinery)."""

import collections
import errno
import os
import random
import stat
import threading
from typing import Dict, Optional

from uffdprobe.uffd import memory, odirect
from uffdprobe.uffd._ffi import ffi, lib
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.messages import PageFault
from uffdprobe.uffd.userfaultfd import Userfaultfd
from .memkinds import SkipScenario

WORDS = PAGE_SIZE // 8
POLL_S = 0.05

ABSENT, CLEAN, DIRTY, LEAVING = "absent", "clean", "dirty", "leaving"


def name_thread(name: str) -> None:
    """Set this thread's comm, so the supervisor's evidence says which thread is blocked."""
    try:
        with open(f"/proc/self/task/{memory.gettid()}/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


class Aborted(Exception):
    """The run is stopping while a thread waits for the page buffer."""


def checksums(addr: int, n: int) -> Dict[str, int]:
    """sum, xor, descending-neighbour count and order-dependent hash of n uint64 at addr (GIL-free)."""
    out = [ffi.new("uint64_t *") for _ in range(4)]
    lib.up_checksum_u64(addr, n, *out)
    return dict(zip(("sum", "xor", "unsorted", "hash"), (int(p[0]) for p in out)))


def open_store(target: str, length: int):
    """The backing store, opened O_DIRECT: an unlinked file in a directory, or the device at offset 0."""
    if stat.S_ISBLK(os.stat(target).st_mode):
        fd = odirect.open_block_device(target)
        size = os.lseek(fd, 0, os.SEEK_END)
        if size < length:
            os.close(fd)
            raise SkipScenario(f"block device {target} holds {size} bytes, the store needs {length}")
        return fd, {"kind": "block-device", "path": target}
    path = os.path.join(target, f".uffdprobe-umap-{os.getpid()}.store")
    fd = memory.open_direct(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    os.unlink(path)  # nothing is left behind even if this child is killed
    return fd, {"kind": "file", "path": path}


def fill_store(fd: int, n_pages: int, seed: int) -> Dict[str, int]:
    """Write the seeded random array to the store; return its checksums and the sorted array's hash."""
    length = n_pages * PAGE_SIZE
    with memory.mmap_anonymous(length) as buf:
        buf.write(0, random.Random(seed).randbytes(length))
        if memory.pwrite_from(fd, buf.addr, length, 0) != length:
            raise OSError(errno.EIO, "short O_DIRECT pwrite while filling the store")
        initial = checksums(buf.addr, n_pages * WORDS)
        lib.up_sort_u64(buf.addr, n_pages * WORDS)
        initial["sorted_hash"] = checksums(buf.addr, n_pages * WORDS)["hash"]
    return initial


class PageBuffer:
    """umap's Buffer: page states, a FIFO of resident pages, free slots; one lock and condition."""

    def __init__(
        self, uffd: Userfaultfd, base: int, n_pages: int, slots: int, store_fd: int, knobs: Optional[dict] = None
    ):
        self.uffd, self.base, self.n_pages, self.fd = uffd, base, n_pages, store_fd
        self.slots = slots
        knobs = knobs or {}
        self.cpu_write_evict = bool(knobs.get("selftest_cpu_write_evict"))
        self.drop_dirty = bool(knobs.get("selftest_drop_dirty"))
        self.write_clean = bool(knobs.get("selftest_unprotected_write"))
        self.state = [ABSENT] * n_pages
        self.fifo: collections.deque = collections.deque()
        self.free, self.leaving, self.wanting = slots, 0, 0
        self.low_free = slots // 4  # evict ahead of demand, like umap's low water mark
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.aborted: Optional[str] = None
        self.error: Optional[str] = None
        self.counters = {
            "missing_faults": 0,
            "wp_faults": 0,
            "evictions": 0,
            "writebacks": 0,
            "leaving_waits": 0,
            "slot_waits": 0,
            "untrapped_writes": 0,
        }

    def addr(self, page: int) -> int:
        return self.base + page * PAGE_SIZE

    def _wait(self, ready) -> None:
        """Wait on the condition (lock held) until ready(); bounded steps, raises Aborted on stop."""
        while not ready():
            if self.stop.is_set():
                raise Aborted("stopping")
            self.cond.wait(POLL_S)

    def _gone(self, exc: UffdError, what: str) -> None:
        """An ioctl failed: ENOENT means the range is no longer registered (rescued); else re-raise."""
        if exc.errno != errno.ENOENT:
            raise exc
        self.aborted = self.aborted or f"{what}: {exc}"

    # -- the fault handler thread -------------------------------------------------------------
    def serve(self) -> None:
        """umap's uffd thread: read fault messages and resolve each, until stop."""
        name_thread("umap-uffd")
        bounce = memory.mmap_anonymous(PAGE_SIZE)
        try:
            while not self.stop.is_set():
                for msg in self.uffd.wait(POLL_S):
                    if isinstance(msg, PageFault):
                        self._fault(msg, bounce.addr)
        except Aborted:  # stop was set while waiting
            pass
        except BaseException as exc:
            self._fail(f"handler: {type(exc).__name__}: {exc}")
        finally:
            bounce.close()

    def _fault(self, msg, bounce: int) -> None:
        page = (msg.address - self.base) // PAGE_SIZE
        if not 0 <= page < self.n_pages:
            return
        if msg.is_wp:
            self._wp_fault(page)
        else:
            self._missing_fault(page, bounce)

    def _missing_fault(self, page: int, bounce: int) -> None:
        """Fill from the store, write-protected (a clean page); make room first when full."""
        with self.cond:
            self.counters["missing_faults"] += 1
            self._wait(lambda: self.state[page] != LEAVING)
            if self.state[page] != ABSENT:  # a duplicate message for a page already in
                self._wake(page)
                return
            if self.free == 0:
                self.counters["slot_waits"] += 1
                self.wanting += 1
                self.cond.notify_all()
                try:
                    self._wait(lambda: self.free > 0)
                finally:
                    self.wanting -= 1
            self.free -= 1
        try:
            if memory.pread_into(self.fd, bounce, PAGE_SIZE, page * PAGE_SIZE) != PAGE_SIZE:
                raise OSError(errno.EIO, f"short O_DIRECT pread of page {page}")
            self.uffd.copy(self.addr(page), bounce, PAGE_SIZE, wp=True)
        except BaseException as exc:
            with self.cond:
                self.free += 1
                self.cond.notify_all()
            if isinstance(exc, UffdError) and exc.call == "UFFDIO_COPY":
                if exc.errno == errno.EEXIST:
                    return self._wake(page)
                return self._gone(exc, f"UFFDIO_COPY page {page}")
            raise
        with self.cond:
            self.state[page] = CLEAN
            self.fifo.append(page)
            self.cond.notify_all()

    def _wp_fault(self, page: int) -> None:
        """A write to a clean page: mark dirty and un-protect; if it is leaving, wait until it left."""
        with self.cond:
            self.counters["wp_faults"] += 1
            if self.state[page] == LEAVING:  # umap's page_already_present() wait
                self.counters["leaving_waits"] += 1
                self._wait(lambda: self.state[page] != LEAVING)
            if self.state[page] in (CLEAN, DIRTY):
                self.state[page] = DIRTY
                try:  # under the lock, so no evictor can protect it in between
                    self.uffd.writeprotect(self.addr(page), PAGE_SIZE, protect=False)
                except UffdError as exc:
                    self._gone(exc, f"UFFDIO_WRITEPROTECT clear page {page}")
                return
        self._wake(page)  # it left: the faulter refaults and gets a MISSING fault

    def _wake(self, page: int) -> None:
        try:
            self.uffd.wake(self.addr(page), PAGE_SIZE)
        except UffdError as exc:
            self._gone(exc, f"UFFDIO_WAKE page {page}")

    # -- the evictor threads ------------------------------------------------------------------
    def evict_loop(self) -> None:
        """umap's EvictWorkers: oldest page first, on demand or to keep low_free slots free."""
        name_thread("umap-evictor")
        try:
            while not self.stop.is_set():
                with self.cond:
                    self._wait(
                        lambda: self.fifo and (self.free + self.leaving < self.low_free or self.wanting > self.leaving)
                    )
                    page = self.fifo.popleft()
                    dirty = self.state[page] == DIRTY
                    self.state[page] = LEAVING
                    self.leaving += 1
                    if dirty:
                        self._protect(page)
                try:
                    self._evict(page, dirty)
                finally:
                    with self.cond:
                        self.state[page] = ABSENT
                        self.leaving -= 1
                        self.free += 1
                        self.counters["evictions"] += 1
                        self.counters["writebacks"] += dirty
                        self.cond.notify_all()
        except Aborted:
            pass
        except BaseException as exc:
            self._fail(f"evictor: {type(exc).__name__}: {exc}")

    def _protect(self, page: int) -> None:
        try:
            self.uffd.writeprotect(self.addr(page), PAGE_SIZE, protect=True)
        except UffdError as exc:
            self._gone(exc, f"UFFDIO_WRITEPROTECT page {page}")

    def _evict(self, page: int, dirty: bool) -> None:
        """Write back (dirty only) from the page address itself, then drop the page."""
        addr = self.addr(page)
        if dirty and not self.drop_dirty:
            if self.cpu_write_evict:
                lib.up_rewrite_u64(addr)  # test-only: a write fault only this eviction's end answers
            if memory.pwrite_from(self.fd, addr, PAGE_SIZE, page * PAGE_SIZE) != PAGE_SIZE:
                raise OSError(errno.EIO, f"short O_DIRECT pwrite of page {page}")
        if self.write_clean and not dirty:
            # Test-only: really drop the protection of a clean page and write it, untrapped.
            self.uffd.writeprotect(addr, PAGE_SIZE, protect=False, dontwake=True)
            memory.touch(addr, PAGE_SIZE, write=True, value=0xA5, stride=512)
        if not self.drop_dirty and not self._matches_store(page):
            # The page is protected and clean now: only a write that went untrapped can change it.
            with self.cond:
                self.counters["untrapped_writes"] += 1
        memory.madvise(addr, PAGE_SIZE, "MADV_DONTNEED")

    def _matches_store(self, page: int) -> bool:
        """Whether the resident page still equals its copy in the store (read back with O_DIRECT)."""
        with memory.mmap_anonymous(PAGE_SIZE) as back:
            memory.pread_into(self.fd, back.addr, PAGE_SIZE, page * PAGE_SIZE)
            return back.read(0, PAGE_SIZE) == memory.Mapping(self.addr(page), PAGE_SIZE).read(0, PAGE_SIZE)

    def _fail(self, what: str) -> None:
        """A harness fault: record it and unregister, so a faulting workload can still finish."""
        self.error = self.error or what
        self.stop.set()
        try:
            self.uffd.unregister(self.base, self.n_pages * PAGE_SIZE)
        except UffdError:
            pass


def still_registered(addr: int) -> bool:
    """Whether the VMA holding addr still carries userfaultfd flags (VmFlags 'um' or 'uw')."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and line.startswith("VmFlags:"):
                flags = line.split()[1:]
                return "um" in flags or "uw" in flags
    return False
