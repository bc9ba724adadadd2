# SPDX-License-Identifier: GPL-2.0-only
"""umap-evict: LLNL umap + umapsort in miniature: a MISSING|WP region filled from an O_DIRECT store,
evictors doing WRITEPROTECT, pwrite from the page itself, MADV_DONTNEED; the array is sorted in it."""

import os
import threading
import time

from uffdprobe.uffd import memory
from uffdprobe.uffd._ffi import lib
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import MMAN, PAGE_SIZE
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from .context import ScenarioContext, watched
from .memkinds import SkipScenario
from .umap_buffer import WORDS, PageBuffer, checksums, fill_store, name_thread, open_store, still_registered

DEFAULTS = {
    "data_pages": 64,
    "buffer_pages": 8,
    "evictors": 2,
    "passes": 2,
    "seed": None,
    "timeout_s": 90.0,
    "selftest_cpu_write_evict": False,
    "selftest_drop_dirty": False,
    "selftest_unprotected_write": False,
}
#: Test-only knobs. cpu_write_evict: the evictor stores into the dirty page it has write-protected
#: (a CPU write instead of a read-GUP) while the handler waits for that eviction: a circular wait
#: on any kernel. drop_dirty: dirty pages are dropped unwritten: real data loss the check must see.
#: unprotected_write: a clean page's protection is really removed and the page written, untrapped.
KNOBS = ("selftest_cpu_write_evict", "selftest_drop_dirty", "selftest_unprotected_write")


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


def _run_threads(
    ctx: ScenarioContext, buf: PageBuffer, n_evictors: int, passes: int, seed: int, timeout_s: float
) -> dict:
    """Start handler, evictors and the workload; report progress while counters move; join all."""
    done: dict = {}
    handler = threading.Thread(target=buf.serve, name="umap-uffd", daemon=True)
    evictors = [threading.Thread(target=buf.evict_loop, name=f"umap-evict{i}", daemon=True) for i in range(n_evictors)]
    work = threading.Thread(
        target=workload, name="umapsort", daemon=True, args=(buf.base, buf.n_pages * WORDS, passes, seed, done)
    )
    for t in [handler, *evictors]:
        t.start()
    with watched(ctx, "umap-evict workload"):
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
    return done


def _verdict(buf: PageBuffer, rescued: bool, initial: dict, done: dict, evidence: dict) -> Outcome:
    """PASS only when sorted and identical to the sorted initial array; otherwise say why."""
    final = done.get("final")
    evidence.update(final=final, counters=dict(buf.counters), elapsed_s=done.get("elapsed_s"))
    if buf.error or done.get("error"):
        return Outcome(Verdict.ERROR, f"harness fault: {buf.error or done['error']}", evidence)
    if rescued or buf.aborted:
        why = buf.aborted or "the VMA lost its userfaultfd flags"
        return Outcome(
            Verdict.ERROR, f"region unregistered from outside (a rescue?): {why}; result not verified", evidence
        )
    if done["stuck_threads"] or final is None:
        return Outcome(Verdict.ERROR, f"threads did not finish: {done['stuck_threads']}", evidence)
    bad = [k for k in ("sum", "xor") if final[k] != initial[k]]
    corrupted = bool(final["unsorted"] or bad or final["hash"] != initial["sorted_hash"])
    lost = buf.counters["untrapped_writes"]
    if lost:
        return Outcome(
            Verdict.WP_LOST,
            f"{lost} write-protected clean page(s) differed from the store at "
            "eviction: writes to them went untrapped" + ("; the sorted data came out corrupted" if corrupted else ""),
            evidence,
        )
    if final["unsorted"] or bad or final["hash"] != initial["sorted_hash"]:
        return Outcome(
            Verdict.ERROR,
            f"data corrupted: {final['unsorted']} descending neighbours, "
            f"checksums differing: {bad or 'none'}, sorted hash "
            f"{'differs' if final['hash'] != initial['sorted_hash'] else 'matches'} "
            "(lost or stale pages on the eviction path)",
            evidence,
        )
    c = buf.counters
    return Outcome(
        Verdict.PASS,
        f"sorted {buf.n_pages} pages {done['passes']} time(s) through "
        f"{buf.slots} slots: {c['missing_faults']} missing "
        f"and {c['wp_faults']} wp faults, {c['evictions']} evictions, "
        f"{c['writebacks']} writebacks, no deadlock",
        evidence,
    )


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
        ctx.note("umap", {"seed": seed, "store": store, "initial": initial, **{k: bool(p.get(k)) for k in KNOBS}})
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
