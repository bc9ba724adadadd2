# SPDX-License-Identifier: GPL-2.0-only
"""PAGEMAP_SCAN's defects in the 6.12 stable line (6.7+ interface; SKIP with the probed reason before).

- pagemap-scan-hugetlb-hole (catalogue): PAGEMAP_SCAN with PM_SCAN_WP_MATCHING over a hugetlb range
  registered for asynchronous uffd-wp that has no page table yet. The walker holds the hugetlb VMA lock
  for read across the walk; before e92d92bbafb2 its pte_hole callback write-protected the hole through
  uffd_wp_range() -> hugetlb_change_protection(), which takes the same lock for write: the scanning
  thread waits for itself, unkillable (STUCK, with its kernel stack as evidence). The fixed kernel
  installs the uffd-wp markers itself: the ioctl returns, and a write to the page then reads as written.
- pagemap-scan-pmd-hole (catalogue): a THP write-protected under asynchronous uffd-wp (clean), then
  dropped whole by MADV_DONTNEED: the PMD is cleared to pmd_none, a hole with no page table.
  MADV_DONTNEED changes the contents (they read as zeroes now), so the range must read as written; before
  40de8160ca7f PAGEMAP_SCAN's hole callback reported it clean, and a dumper (CRIU) kept stale contents.
"""

from typing import Any, Dict

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import MMAN, PAGE_SIZE
from uffdprobe.uffd.pagemap import Category
from uffdprobe.verdicts import Outcome, Verdict
from .common import PATTERN, page_flags
from .context import ScenarioContext, watched
from .memkinds import SkipScenario, allocate, anon_huge_kb, memfd_mapping
from .move_scan import uffd_with

GIB = 1 << 30


def run_scan_hugetlb_hole(ctx: ScenarioContext) -> Outcome:
    why = pagemap.scan_unsupported()
    if why:
        raise SkipScenario(why)
    uffd = uffd_with(
        Feature.PAGEFAULT_FLAG_WP | Feature.WP_ASYNC | Feature.WP_HUGETLBFS_SHMEM,
        "UFFD_FEATURE_WP_ASYNC with WP_HUGETLBFS_SHMEM (v6.7)",
    )
    reserve = memory.mmap_anonymous(2 * GIB, prot=MMAN["PROT_NONE"], extra_flags=MMAN["MAP_NORESERVE"])
    at = (reserve.addr + GIB - 1) & ~(GIB - 1)  # nothing else maps this 1 GiB: no pmd table, a walk hole
    m = memfd_mapping("hugetlb", shared=True, at=at)
    end = m.addr + m.length
    uffd.register(m.addr, m.length, RegisterMode.WP)
    evidence: Dict[str, Any] = {
        "placed": hex(m.addr),
        "length": m.length,
        "pagemap_before": page_flags(pagemap.read(m.addr)[0]),
    }
    ctx.note("placed", evidence["placed"])
    with watched(ctx, "PAGEMAP_SCAN(PM_SCAN_WP_MATCHING) over an unpopulated hugetlb range", rescue="kill"):
        cleared, walk_end = pagemap.scan(m.addr, end, wp_matching=True, check_wpasync=True)
    evidence.update(
        scan_returned=True,
        scan_regions=len(cleared),
        walk_end_ok=walk_end == end,
        pagemap_after_scan=page_flags(pagemap.read(m.addr)[0]),
    )
    m.write(0, b"written after the scan")  # WP_ASYNC: the marker is resolved, the page counts as written
    written, _ = pagemap.scan(m.addr, end, require=Category.WRITTEN, report=Category.WRITTEN)
    evidence.update(written_pages=sum(r.pages for r in written), uffd_messages=len(uffd.read()))
    if not evidence["pagemap_after_scan"]["uffd_wp"]:
        return Outcome(
            Verdict.WP_LOST,
            "PAGEMAP_SCAN with WP_MATCHING returned but left the hugetlb hole without a uffd-wp marker",
            evidence,
        )
    if evidence["written_pages"] != m.length // PAGE_SIZE:
        return Outcome(
            Verdict.WP_LOST,
            f"after a write to the protected huge page PAGEMAP_SCAN reports "
            f"{evidence['written_pages']} of {m.length // PAGE_SIZE} pages written",
            evidence,
        )
    return Outcome(
        Verdict.PASS,
        "PAGEMAP_SCAN write-protected the hugetlb hole (a uffd-wp marker) and returned; a later write reads as written",
        evidence,
    )


def run_scan_pmd_hole(ctx: ScenarioContext) -> Outcome:
    why = pagemap.scan_unsupported()
    if why:
        raise SkipScenario(why)
    uffd = uffd_with(Feature.PAGEFAULT_FLAG_WP | Feature.WP_ASYNC, "UFFD_FEATURE_WP_ASYNC (v6.7)")
    m = allocate("anon-thp", PATTERN)  # one PMD-mapped THP (SkipScenario if none formed)
    end, pages = m.addr + m.length, m.length // PAGE_SIZE
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)  # protected in place, as one huge PMD: clean
    clean, _ = pagemap.scan(m.addr, end, require=Category.WRITTEN, report=Category.WRITTEN)
    huge_kb = anon_huge_kb(m.addr)
    memory.madvise(m.addr, m.length, "MADV_DONTNEED")  # the whole PMD: pmd_none, no page table below it
    after, _ = pagemap.scan(m.addr, end, require=Category.WRITTEN, report=Category.WRITTEN)
    evidence: Dict[str, Any] = {
        "pages": pages,
        "huge_kb_before_zap": huge_kb,
        "written_after_protect": sum(r.pages for r in clean),
        "written_after_zap": sum(r.pages for r in after),
        "pagemap_after_zap": page_flags(pagemap.read(m.addr)[0]),
        "reads_zero_after_zap": m.read(PAGE_SIZE, 8) == bytes(8),
    }
    if evidence["written_after_protect"]:
        return Outcome(Verdict.ERROR, "PAGEMAP_SCAN reports the freshly write-protected THP written", evidence)
    if huge_kb * 1024 < m.length:
        return Outcome(Verdict.ERROR, "the THP was split before the zap: no PMD hole to ask about", evidence)
    if evidence["written_after_zap"] != pages:
        return Outcome(
            Verdict.WP_LOST,
            f"after MADV_DONTNEED dropped the whole write-protected THP, PAGEMAP_SCAN "
            f"reports {evidence['written_after_zap']} of {pages} pages written: the zeroing goes "
            "untracked",
            evidence,
        )
    return Outcome(Verdict.PASS, "PAGEMAP_SCAN reports the THP dropped by MADV_DONTNEED (a PMD hole) written", evidence)
