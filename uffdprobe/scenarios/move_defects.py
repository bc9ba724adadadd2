# SPDX-License-Identifier: GPL-2.0-only
"""UFFDIO_MOVE's defects in the 6.12 stable line (6.8+ interface; SKIP with the probed reason before).

- move-swapcache (catalogue): a page paged out and read back into the swap cache without being mapped
  (MADV_WILLNEED), then moved with UFFDIO_MOVE while its PTE is still a swap entry. Before c50f8e6053b0
  the move carried only the PTE: the cached folio kept the source's anon_vma and index, and the swap-in
  at the destination hit a kernel BUG (DEBUG_VM's rmap checks under do_swap_page). The fixed kernel
  moves the folio's rmap with it: the reader gets the bytes and the source is empty.
- move-large-folio (catalogue): UFFDIO_MOVE of one 4 KiB page out of a THP whose first page is spliced
  into a pipe that stays open: a reference beyond the folio's mappings, so split_folio() refuses with
  -EAGAIN. Before 454143aeb4c6 move_pages() retried that for ever: the ioctl spins in the kernel (R)
  until a fatal signal. The fixed kernel answers EBUSY at once; with the pipe closed the same move
  splits the folio and moves the page.

The swap-cache move and its read run in a victim process (victim.py): a BUG there must not take the
guest down. The large-folio move runs in the scenario's own process: its livelock is killable and
breaks nothing, so the supervisor's spin watch calls it HANG with the task's sampled state and kills it.
"""

import errno
import os
import threading
import time
from typing import Any, Dict, Optional

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from . import victim
from .common import PATTERN, page_flags
from .context import ScenarioContext, watched
from .memkinds import allocate, anon_huge_kb
from .move_scan import MOVE_FEATURE, uffd_with

SETUP_S = 60.0  # page out, read back into the swap cache, move: slow under TCG
READ_S = 15.0  # the reader of the moved page: a fault on a cached swap entry
#: move-large-folio: a move still running (R or D) this long never returns; a fixed kernel answers in
#: well under a millisecond, also under TCG
LARGE_FOLIO_DEFAULTS = {"move_bound_s": 5.0}


def run_move_swapcache(ctx: ScenarioContext) -> Outcome:
    uffd_with(Feature.MOVE, MOVE_FEATURE).close()  # SkipScenario on a kernel without UFFDIO_MOVE
    v = victim.run(_move_and_read, SETUP_S, READ_S, ctx)
    got = v.facts
    if v.state == "error":
        return Outcome(Verdict.ERROR, f"the move victim failed: {got['error']}", got)
    if v.state == "thread_gone":  # the victim is left asleep: its exit would spin on the dead lock
        return Outcome(
            Verdict.ERROR,
            "the thread reading the moved, swap-cached page died inside the kernel "
            "(its process lives on): the swap-in of the moved entry crashed",
            got,
        )
    if v.state == "stuck":
        return Outcome(
            Verdict.STUCK, f"the reader of the moved, swap-cached page did not return within {READ_S:.0f}s", got
        )
    if v.state == "silent":
        return Outcome(Verdict.ERROR, f"the victim reported no move within {SETUP_S:.0f}s", got)
    if got["read"] != PATTERN[:64].hex():
        return Outcome(Verdict.ERROR, "the reader of the moved page got other bytes", got)
    if got["source_after"]["present"] or got["source_after_swapped"]:
        return Outcome(Verdict.ERROR, "the source still maps the page after UFFDIO_MOVE", got)
    return Outcome(
        Verdict.PASS,
        "UFFDIO_MOVE of a swap-cached page: the reader at the destination got its bytes and the source is empty",
        got,
    )


def _move_and_read(report: victim.Report) -> None:
    uffd = uffd_with(Feature.MOVE, MOVE_FEATURE)
    src = allocate("anon-swap", PATTERN)  # paged out: a swap entry in the pte
    memory.madvise(src.addr, PAGE_SIZE, "MADV_WILLNEED")  # read back into the swap cache, not mapped
    cached = _wait_cached(src.addr, 10.0)
    before = pagemap.read(src.addr)[0]
    dst = memory.mmap_anonymous(PAGE_SIZE)
    uffd.register(dst.addr, PAGE_SIZE, RegisterMode.MISSING)
    moved = uffd.move(dst.addr, src.addr, PAGE_SIZE)
    src_after, dst_after = pagemap.read(src.addr)[0], pagemap.read(dst.addr)[0]
    report(
        moved=moved,
        source_in_swap_cache=cached,
        source_before=page_flags(before),
        source_before_swapped=before.swapped,
        source_after=page_flags(src_after),
        source_after_swapped=src_after.swapped,
        destination_swapped=dst_after.swapped,
        destination_in_swap_cache=memory.mincore(dst.addr, PAGE_SIZE)[0],
    )

    def read() -> None:
        report(watch_tid=memory.gettid())
        report(read=dst.read(0, 64).hex(), watch_done=True, done=True)  # the swap-in at the destination

    threading.Thread(target=read, daemon=True).start()


def _wait_cached(addr: int, seconds: float) -> Optional[bool]:
    """Whether mincore() reports the swapped-out page's swap-cache copy up to date within `seconds`."""
    end = time.monotonic() + seconds
    while True:
        if memory.mincore(addr, PAGE_SIZE)[0]:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


def run_move_large_folio(ctx: ScenarioContext) -> Outcome:
    """Move one page out of a THP while a pipe holds another of its pages, then again with the pipe closed."""
    uffd = uffd_with(Feature.MOVE, MOVE_FEATURE)  # SkipScenario on a kernel without UFFDIO_MOVE
    bound_s = float({**LARGE_FOLIO_DEFAULTS, **ctx.params}["move_bound_s"])
    src = allocate("anon-thp", PATTERN)  # one PMD-mapped THP, or SkipScenario
    rfd, wfd = os.pipe()
    try:
        trigger = {
            "huge_kb": anon_huge_kb(src.addr),
            # the first page of the THP in a pipe that stays open: a reference the split cannot drop
            "spliced": memory.vmsplice(wfd, src.addr, PAGE_SIZE),
            "source_before": page_flags(pagemap.read(src.addr + PAGE_SIZE)[0]),
        }
        dst = memory.mmap_anonymous(PAGE_SIZE)
        uffd.register(dst.addr, PAGE_SIZE, RegisterMode.MISSING)
        ctx.note("trigger", trigger)
        got: Dict[str, Any] = {"held": _move(ctx, uffd, dst.addr, src.addr + PAGE_SIZE, bound_s, "held")}
        got["huge_kb_after_refusal"] = anon_huge_kb(src.addr)
    finally:
        os.close(wfd)
        os.close(rfd)
    # with the reference gone the same move splits the folio and moves the page: the refusal was the pipe's
    got["released"] = _move(ctx, uffd, dst.addr, src.addr + PAGE_SIZE, bound_s, "released")
    got["read"] = dst.read(0, 64) == PATTERN[:64] if got["released"]["moved"] else None
    got["source_after"] = page_flags(pagemap.read(src.addr + PAGE_SIZE)[0])
    held, released = got["held"], got["released"]
    if held["moved"]:
        return Outcome(Verdict.ERROR, "the page moved while the pipe held its THP: no extra reference held", got)
    if held["errno"] != "EBUSY":
        return Outcome(
            Verdict.ERROR, f"UFFDIO_MOVE out of a THP with a held page failed otherwise: {held['errno']}", got
        )
    if not released["moved"] or not got["read"] or got["source_after"]["present"]:
        return Outcome(Verdict.ERROR, "with the pipe closed the same move did not move the page", got)
    return Outcome(
        Verdict.PASS,
        f"UFFDIO_MOVE of a page of a THP whose first page sits in a pipe: EBUSY in {held['ms']:.2f} ms; "
        "with the pipe closed the same move split the THP and moved the page",
        got,
    )


def _move(ctx: ScenarioContext, uffd: Userfaultfd, dst: int, src: int, bound_s: float, held: str) -> Dict[str, Any]:
    """One watched UFFDIO_MOVE of a page: bytes moved (0 when refused), errno name, milliseconds."""
    what = "UFFDIO_MOVE of one page out of a THP " + (
        "whose first page sits in an open pipe" if held == "held" else "after the pipe was closed"
    )
    start = time.monotonic()
    with watched(ctx, what, spin_s=bound_s, rescue="kill"):  # a livelocked move is killable
        try:
            moved, err = uffd.move(dst, src, PAGE_SIZE), None
        except UffdError as exc:
            moved, err = 0, errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return {"moved": moved, "errno": err, "ms": round((time.monotonic() - start) * 1000, 3)}
