# SPDX-License-Identifier: GPL-2.0-only
"""uffd-wp on shared memory and hugetlb: two catalogue defects where a write to a write-protected page
goes through without a uffd-wp fault (WP_LOST).

- wp-shared-mprotect: on a shared memfd (shmem or hugetlb) mapping, mprotect(PROT_READ) then
  mprotect(PROT_READ|PROT_WRITE) of a write-protected page rebuilds its pte from vma->vm_page_prot;
  without write-notify for uffd-wp VMAs (51d3d5eb74ff) that is writable, uffd-wp bit or not.
- wp-hugetlb-private-cow: a private hugetlb page write-protected while still unpopulated (a pte marker)
  and then written, never read: hugetlb_no_page()'s CoW shortcut maps a writable copy without asking the
  monitor unless hugetlb_wp() refuses CoW on a uffd-wp pte (60d5b473d61b).
- wp-hugetlb-no-pgtable: a hugetlb mapping alone in a fresh 1 GiB-aligned area has no page table
  for its huge pte yet; write-protecting it must allocate one to hold the marker (fed15f1345dc), or
  nothing is protected and the first write maps the page writable.
"""

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import MMAN, PROT_RW
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome
from .common import page_flags, wp_page
from .context import ScenarioContext
from .memkinds import hugepage_size, memfd_mapping
from .wp_real_write import trap_real_write


def run_mprotect(ctx: ScenarioContext) -> Outcome:
    """Protect a populated shared page, mprotect it read-only and back to read-write, then write."""
    uffd, m = wp_page(ctx)
    memory.mprotect(m.addr, m.length, MMAN["PROT_READ"])
    memory.mprotect(m.addr, m.length, PROT_RW)
    ctx.note("pagemap_after_mprotect", page_flags(pagemap.read(m.addr)[0]))
    out = trap_real_write(ctx, uffd, m)
    out.reason = f"after mprotect(PROT_READ) and back to PROT_READ|PROT_WRITE: {out.reason}"
    return out


def run_hugetlb_private_cow(ctx: ScenarioContext) -> Outcome:
    """Write-protect a never-touched private hugetlb page, then write it (no read first)."""
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    m = memfd_mapping("hugetlb", shared=False)
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)
    ctx.note("pagemap_before", page_flags(pagemap.read(m.addr)[0]))  # a marker: not present
    ctx.hand_over(uffd, m.addr, m.length, rescue="unprotect")
    out = trap_real_write(ctx, uffd, m)
    out.reason = f"first write to an unpopulated, write-protected private hugetlb page: {out.reason}"
    return out


def run_hugetlb_no_pgtable(ctx: ScenarioContext) -> Outcome:
    """Write-protect an unpopulated shared hugetlb page mapped where no page table exists yet, then write."""
    gib = 1 << 30
    reserve = memory.mmap_anonymous(2 * gib, prot=MMAN["PROT_NONE"], extra_flags=MMAN["MAP_NORESERVE"])
    try:
        at = (reserve.addr + gib - 1) & ~(gib - 1)  # nothing else maps this 1 GiB: no pmd table for it
        m = memfd_mapping("hugetlb", shared=True, at=at)
    except BaseException:
        reserve.close()
        raise
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)
    ctx.note("pagemap_before", page_flags(pagemap.read(m.addr)[0]))  # the marker, if one was installed
    ctx.note("placed", {"address": hex(m.addr), "huge_page_size": hugepage_size()})
    ctx.hand_over(uffd, m.addr, m.length, rescue="unprotect")
    out = trap_real_write(ctx, uffd, m)
    out.reason = f"first write to a write-protected hugetlb page with no page table before: {out.reason}"
    return out
