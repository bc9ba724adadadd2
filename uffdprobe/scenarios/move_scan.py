# SPDX-License-Identifier: GPL-2.0-only
"""The newest uffd interfaces, asked their basic question (6.8's UFFDIO_MOVE, 6.7's PAGEMAP_SCAN with
asynchronous uffd-wp); a kernel without them is SKIP with the probed reason (CANNOT ASK on 6.1).

- move-basic: a MISSING fault on an empty destination answered by UFFDIO_MOVE of a populated source
  (a small page, a THP moved as one PMD, a swapped-out page): the data arrives, the source is empty.
  It runs in a victim process (victim.py): a paged-out page may still sit in the swap cache, where a
  kernel without c50f8e6053b0 BUGs (move-swapcache asks that on purpose).
- pagemap-scan-written: WP_ASYNC on a populated range, PAGEMAP_SCAN with PM_SCAN_WP_MATCHING clears the
  written state, two writes later a scan names exactly those two pages, and no uffd message was raised.
- pagemap-scan-zapped (catalogue): pages written under WP_ASYNC, then zapped by MADV_DONTNEED, are not
  write-protected, so both of PAGEMAP_SCAN's paths must call them written: the PAGE_IS_WRITTEN fast path
  and the generic one (a query through category_anyof_mask). Before 07b4377bdbe7 the generic path called
  an unpopulated pte clean, and a dumper using it (CRIU) stopped tracking writes to the range.
"""

import errno
import threading
from typing import Any, Dict

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.messages import PageFault, as_data
from uffdprobe.uffd.pagemap import Category
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from . import victim
from .common import PATTERN, page_flags
from .context import ScenarioContext
from .memkinds import SkipScenario, allocate, thp_size


ZAPPED_PAGES = 16
MOVE_FEATURE = "UFFD_FEATURE_MOVE (UFFDIO_MOVE, v6.8)"
MOVE_SETUP_S = 60.0  # allocate (a page-out for anon-swap), fault, move: slow under TCG
MOVE_READ_S = 15.0


def uffd_with(features: Feature, what: str) -> Userfaultfd:
    """A userfaultfd with `features` enabled, or SkipScenario naming what the kernel lacks."""
    uffd = Userfaultfd.open()
    try:
        uffd.api(features)
    except UffdError as exc:
        uffd.close()
        if exc.errno == errno.EINVAL:
            raise SkipScenario(f"kernel lacks {what}") from None
        raise
    return uffd


def run_move(ctx: ScenarioContext) -> Outcome:
    uffd_with(Feature.MOVE, MOVE_FEATURE).close()  # SkipScenario on a kernel without UFFDIO_MOVE
    v = victim.run(lambda report: _move_work(ctx.memory, report), MOVE_SETUP_S, MOVE_READ_S + 5.0, ctx)
    got = v.facts
    if v.state == "error":
        return Outcome(Verdict.ERROR, f"the move victim failed: {got['error']}", got)
    if v.state == "thread_gone":  # a page paged out may still sit in the swap cache: see move-swapcache
        return Outcome(
            Verdict.ERROR, "the reader of the moved range died inside the kernel (its process lives on)", got
        )
    if v.state in ("stuck", "silent"):
        return Outcome(
            Verdict.ERROR,
            "the reader of the moved range did not finish in time"
            if v.state == "stuck"
            else "the victim reported no fault and no move in time",
            got,
        )
    if not got.get("fault_raised"):
        return Outcome(Verdict.ERROR, "reading the empty destination raised no MISSING fault", got)
    if "move_error" in got:
        return Outcome(
            Verdict.REFUSED, f"UFFDIO_MOVE of a populated {ctx.memory} source refused: {got['move_strerror']}", got
        )
    if not got["read_ok"]:
        return Outcome(Verdict.ERROR, "the faulting reader did not get the moved bytes", got)
    if got["source_mapped_after"]:
        return Outcome(Verdict.ERROR, "the source still maps a page after UFFDIO_MOVE", got)
    if not got["last_page_ok"]:
        return Outcome(Verdict.ERROR, "the last page of the moved range lost its bytes", got)
    return Outcome(
        Verdict.PASS,
        f"UFFDIO_MOVE answered the fault with the {ctx.memory} source ({got['moved']} "
        "bytes); the reader got its bytes and the source is empty",
        got,
    )


def _move_work(kind: str, report: victim.Report) -> None:
    """In the victim: a reader faults on the empty destination, the fault is answered by UFFDIO_MOVE."""
    uffd = uffd_with(Feature.MOVE, MOVE_FEATURE)
    src = allocate(kind, PATTERN)
    size = src.length
    dst = memory.mmap_anonymous(size, align=thp_size() if kind == "anon-thp" else PAGE_SIZE)
    if kind == "anon-thp":
        memory.madvise(dst.addr, size, "MADV_HUGEPAGE")
    uffd.register(dst.addr, size, RegisterMode.MISSING)
    report(source_before=page_flags(pagemap.read(src.addr)[0]))

    finished = threading.Event()

    def read() -> None:  # after the move, nothing but this thread touches the two ranges
        report(watch_tid=memory.gettid())
        got = dst.read(0, len(PATTERN))
        src_after = pagemap.read(src.addr, size // PAGE_SIZE)
        report(
            read_ok=got == PATTERN,
            source_after=page_flags(src_after[0]),
            source_mapped_after=any(e.present or e.swapped for e in src_after),
            destination_after=page_flags(pagemap.read(dst.addr)[0]),
            last_page_ok=dst.read(size - PAGE_SIZE, len(PATTERN)) == PATTERN,
            watch_done=True,
        )
        finished.set()

    threading.Thread(target=read, daemon=True).start()
    msgs = uffd.wait(5.0)
    report(messages=[as_data(x) for x in msgs], fault_raised=any(isinstance(x, PageFault) for x in msgs))
    try:
        report(moved=uffd.move(dst.addr, src.addr, size))
    except UffdError as exc:
        uffd.unregister(dst.addr, size)  # the reader goes on and reports
        report(move_error=str(exc), move_strerror=exc.strerror)
    if finished.wait(MOVE_READ_S):  # "done" only once both the move and the read are reported
        report(done=True)


def run_scan_written(ctx: ScenarioContext) -> Outcome:
    why = pagemap.scan_unsupported()
    if why:
        raise SkipScenario(why)
    uffd = uffd_with(Feature.PAGEFAULT_FLAG_WP | Feature.WP_ASYNC, "UFFD_FEATURE_WP_ASYNC (v6.7)")
    m = allocate(ctx.memory, PATTERN)
    uffd.register(m.addr, m.length, RegisterMode.WP)
    end = m.addr + m.length
    cleared, _ = pagemap.scan(
        m.addr, end, wp_matching=True, check_wpasync=True, require=Category.WRITTEN, report=Category.WRITTEN
    )
    clean, _ = pagemap.scan(m.addr, end, require=Category.WRITTEN, report=Category.WRITTEN)
    last = m.length - PAGE_SIZE
    m.write(0, b"first write")
    m.write(last, b"last write")
    written, walk_end = pagemap.scan(m.addr, end, require=Category.WRITTEN, report=Category.WRITTEN)
    pages = sorted({a - m.addr for r in written for a in range(r.start, r.end, PAGE_SIZE)})
    whole = list(range(0, m.length, PAGE_SIZE))  # a huge page protected and written as one
    wants = [[0, last], whole] if ctx.memory == "anon-thp" else [whole]  # a THP may be split by the first write
    evidence: Dict[str, Any] = {
        "cleared_regions": len(cleared),
        "written_after_clear": [(r.start - m.addr, r.end - m.addr) for r in clean],
        "written_offsets": pages[:8] + (["..."] if len(pages) > 8 else []),
        "walk_end_ok": walk_end == end,
        "uffd_messages": [as_data(x) for x in uffd.read()],
    }
    if not cleared:
        return Outcome(Verdict.ERROR, "the populated range was not reported written before the first clear", evidence)
    if clean:
        return Outcome(
            Verdict.WP_LOST, "PAGEMAP_SCAN still reports pages written right after WP_MATCHING cleared them", evidence
        )
    if evidence["uffd_messages"]:
        return Outcome(Verdict.ERROR, "asynchronous write protection raised uffd messages", evidence)
    if pages not in wants:
        return Outcome(
            Verdict.WP_LOST,
            f"PAGEMAP_SCAN reports {len(pages)} written page(s) after two writes, "
            f"{' or '.join(str(len(w)) for w in wants)} expected",
            evidence,
        )
    return Outcome(
        Verdict.PASS,
        "PAGEMAP_SCAN cleared the written state and then named exactly the written page(s); no uffd message",
        evidence,
    )


def run_scan_zapped(ctx: ScenarioContext) -> Outcome:
    why = pagemap.scan_unsupported()
    if why:
        raise SkipScenario(why)
    uffd = uffd_with(Feature.PAGEFAULT_FLAG_WP | Feature.WP_ASYNC, "UFFD_FEATURE_WP_ASYNC (v6.7)")
    m = memory.mmap_anonymous(ZAPPED_PAGES * PAGE_SIZE)
    end = m.addr + m.length
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)
    memory.touch(m.addr, m.length, write=True, value=0x5A)  # written: the protection is resolved
    memory.madvise(m.addr, m.length, "MADV_DONTNEED")  # zapped: pte_none, no marker
    fast, _ = pagemap.scan(m.addr, end, require=Category.WRITTEN, report=Category.WRITTEN)
    generic, _ = pagemap.scan(m.addr, end, anyof=Category.WRITTEN, report=Category.WRITTEN)
    counts = {
        "fast_path_written": sum(r.pages for r in fast),
        "generic_path_written": sum(r.pages for r in generic),
        "pages": ZAPPED_PAGES,
        "pagemap_after_zap": page_flags(pagemap.read(m.addr)[0]),
    }
    if counts["fast_path_written"] != ZAPPED_PAGES:
        return Outcome(Verdict.ERROR, "the PAGE_IS_WRITTEN fast path does not report the zapped pages written", counts)
    if counts["generic_path_written"] != ZAPPED_PAGES:
        return Outcome(
            Verdict.WP_LOST,
            f"the generic PAGEMAP_SCAN path reports {counts['generic_path_written']} of "
            f"{ZAPPED_PAGES} zapped, unprotected pages written (the fast path: all): a dumper using it "
            "stops tracking writes there",
            counts,
        )
    return Outcome(Verdict.PASS, "both PAGEMAP_SCAN paths report every zapped page written", counts)
