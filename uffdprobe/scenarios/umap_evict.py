"""umap-evict: LLNL umap + umapsort in miniature: a MISSING|WP region filled from an O_DIRECT store,
evictors doing WRITEPROTECT, pwrite from the page itself, MADV_DONTNEED; the array is sorted in it."""
import collections
import errno
import os
import random
import stat
import threading
import time
from typing import Dict, Optional

from .. import memory
from .._ffi import ffi, lib
from ..errors import UffdError
from ..flags import Feature, RegisterMode
from ..memory import MMAN, PAGE_SIZE
from ..messages import PageFault
from ..uffd import Userfaultfd
from ..verdicts import Outcome, Verdict
from .context import ScenarioContext
from .memkinds import SkipScenario

DEFAULTS = {"data_pages": 64, "buffer_pages": 8, "evictors": 2, "passes": 2, "seed": None,
            "timeout_s": 90.0, "selftest_cpu_write_evict": False, "selftest_drop_dirty": False,
            "selftest_unprotected_write": False}
#: Test-only knobs. cpu_write_evict: the evictor stores into the dirty page it has write-protected
#: (a CPU write instead of a read-GUP) while the handler waits for that eviction: a circular wait
#: on any kernel. drop_dirty: dirty pages are dropped unwritten: real data loss the check must see.
#: unprotected_write: a clean page's protection is really removed and the page written, untrapped.
KNOBS = ("selftest_cpu_write_evict", "selftest_drop_dirty", "selftest_unprotected_write")
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
        fd = memory.open_direct(target)
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

    def __init__(self, uffd: Userfaultfd, base: int, n_pages: int, slots: int, store_fd: int,
                 knobs: Optional[dict] = None):
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
        self.counters = {"missing_faults": 0, "wp_faults": 0, "evictions": 0, "writebacks": 0,
                         "leaving_waits": 0, "slot_waits": 0, "untrapped_writes": 0}

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
                    self._wait(lambda: self.fifo and (self.free + self.leaving < self.low_free
                                                      or self.wanting > self.leaving))
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


def workload(base: int, n: int, passes: int, seed: int, done: dict) -> None:
    """umapsort: sort in place; before each later pass reverse and shuffle per page. All in C."""
    name_thread("umapsort")
    try:
        for p in range(passes):
            if p:
                lib.up_scramble_u64(base, n, WORDS, seed + p)
            lib.up_sort_u64(base, n)
            done["passes"] = p + 1
        done["final"] = checksums(base, n)
    except BaseException as exc:
        done["error"] = f"workload: {type(exc).__name__}: {exc}"


def _run_threads(ctx: ScenarioContext, buf: PageBuffer, n_evictors: int, passes: int, seed: int,
                 timeout_s: float) -> dict:
    """Start handler, evictors and the workload; report progress while counters move; join all."""
    done: dict = {}
    handler = threading.Thread(target=buf.serve, name="umap-uffd", daemon=True)
    evictors = [threading.Thread(target=buf.evict_loop, name=f"umap-evict{i}", daemon=True)
                for i in range(n_evictors)]
    work = threading.Thread(target=workload, name="umapsort", daemon=True,
                            args=(buf.base, buf.n_pages * WORDS, passes, seed, done))
    for t in [handler, *evictors]:
        t.start()
    ctx.watch("umap-evict workload")
    started = time.monotonic()
    work.start()
    last = None
    while work.is_alive() and time.monotonic() - started < timeout_s:
        work.join(0.25)
        now = dict(buf.counters)
        if now != last:  # only real movement restarts the supervisor's hang timer
            ctx.progress(**now)
            last = now
    done["elapsed_s"] = round(time.monotonic() - started, 3)
    if work.is_alive():
        buf._fail(f"workload did not finish within {timeout_s:g}s")
        work.join(10.0)
    buf.stop.set()
    with buf.cond:
        buf.cond.notify_all()
    for t in [handler, *evictors]:
        t.join(5.0)
    done["stuck_threads"] = [t.name for t in [work, handler, *evictors] if t.is_alive()]
    ctx.unwatch()
    return done


def _verdict(buf: PageBuffer, rescued: bool, initial: dict, done: dict, evidence: dict) -> Outcome:
    """PASS only when sorted and identical to the sorted initial array; otherwise say why."""
    final = done.get("final")
    evidence.update(final=final, counters=dict(buf.counters), elapsed_s=done.get("elapsed_s"))
    if buf.error or done.get("error"):
        return Outcome(Verdict.ERROR, f"harness fault: {buf.error or done['error']}", evidence)
    if rescued or buf.aborted:
        why = buf.aborted or "the VMA lost its userfaultfd flags"
        return Outcome(Verdict.ERROR, f"region unregistered from outside (a rescue?): {why}; "
                       "result not verified", evidence)
    if done["stuck_threads"] or final is None:
        return Outcome(Verdict.ERROR, f"threads did not finish: {done['stuck_threads']}", evidence)
    bad = [k for k in ("sum", "xor") if final[k] != initial[k]]
    corrupted = bool(final["unsorted"] or bad or final["hash"] != initial["sorted_hash"])
    lost = buf.counters["untrapped_writes"]
    if lost:
        return Outcome(Verdict.WP_LOST, f"{lost} write-protected clean page(s) differed from the store at "
                       "eviction: writes to them went untrapped"
                       + ("; the sorted data came out corrupted" if corrupted else ""), evidence)
    if final["unsorted"] or bad or final["hash"] != initial["sorted_hash"]:
        return Outcome(Verdict.ERROR, f"data corrupted: {final['unsorted']} descending neighbours, "
                       f"checksums differing: {bad or 'none'}, sorted hash "
                       f"{'differs' if final['hash'] != initial['sorted_hash'] else 'matches'} "
                       "(lost or stale pages on the eviction path)", evidence)
    c = buf.counters
    return Outcome(Verdict.PASS, f"sorted {buf.n_pages} pages {done['passes']} time(s) through "
                   f"{buf.slots} slots: {c['missing_faults']} missing "
                   f"and {c['wp_faults']} wp faults, {c['evictions']} evictions, "
                   f"{c['writebacks']} writebacks, no deadlock", evidence)


def run(ctx: ScenarioContext) -> Outcome:
    """The umap-evict scenario: see the module docstring."""
    p = {**DEFAULTS, **ctx.params}
    n_pages, slots = int(p["data_pages"]), int(p["buffer_pages"])
    if not 2 <= slots < n_pages:
        return Outcome(Verdict.ERROR, f"buffer_pages={slots} must be in [2, data_pages={n_pages})")
    seed = p["seed"] if p["seed"] is not None else int.from_bytes(os.urandom(4), "little")
    try:
        fd, store = open_store(ctx.odirect_target, n_pages * PAGE_SIZE)
    except SkipScenario as exc:  # returned, not raised: the verdict is ours to give
        return Outcome(Verdict.SKIP, str(exc))
    try:
        initial = fill_store(fd, n_pages, seed)
        ctx.note("umap", {"seed": seed, "store": store, "initial": initial,
                          **{k: bool(p.get(k)) for k in KNOBS}})
        return _sort_through_buffer(ctx, p, fd, initial, seed)
    finally:
        os.close(fd)


def _sort_through_buffer(ctx: ScenarioContext, p: dict, fd: int, initial: dict, seed: int) -> Outcome:
    """Map and register the region, run the threads, judge; leak the region if a thread is stuck."""
    n_pages = int(p["data_pages"])
    length = n_pages * PAGE_SIZE
    uffd = Userfaultfd.open()
    region = memory.mmap_anonymous(length, extra_flags=MMAN["MAP_NORESERVE"])
    done: dict = {"stuck_threads": []}
    try:
        uffd.api(Feature.PAGEFAULT_FLAG_WP)
        uffd.register(region.addr, length, RegisterMode.MISSING | RegisterMode.WP)
        ctx.hand_over(uffd, region.addr, length, rescue="unregister")
        buf = PageBuffer(uffd, region.addr, n_pages, int(p["buffer_pages"]), fd, {k: p.get(k) for k in KNOBS})
        done = _run_threads(ctx, buf, int(p["evictors"]), int(p["passes"]), seed, float(p["timeout_s"]))
        rescued = not buf.error and not still_registered(region.addr)
        return _verdict(buf, rescued, initial, done, {"params": p})
    finally:
        if not done["stuck_threads"]:  # never unmap or close under a thread that may still use them
            region.close()
            uffd.close()
