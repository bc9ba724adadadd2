# SPDX-License-Identifier: GPL-2.0-only
"""Splitting a write-protected huge zero PMD must keep uffd-wp on its 512 PTEs (fixed by 42b2af2c9b7e).

A 2 MiB range only read is mapped by the huge zero page; protect it all, un-protect one 4 KiB page (as a
uffd-wp handler does after a fault: that splits the PMD), then write another page of the range.
"""

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE, Mapping
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome
from .common import page_flags
from .context import ScenarioContext
from .memkinds import SkipScenario, thp_size
from .wp_real_write import trap_real_write


USE_ZERO_PAGE = "/sys/kernel/mm/transparent_hugepage/use_zero_page"


def page_view(addr: int) -> Mapping:
    """One page of a mapping owned elsewhere, read and written by offset; closing it unmaps nothing."""
    return Mapping(addr, PAGE_SIZE, _base=addr, _base_len=0)


def _use_zero_page() -> bool:
    try:
        with open(USE_ZERO_PAGE) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def huge_zero_range() -> Mapping:
    """A THP-aligned anonymous range read once, so that one PMD maps the huge zero page; SkipScenario
    when the kernel maps less than the whole range on that one read fault."""
    if not _use_zero_page():
        raise SkipScenario(f"the huge zero page is off ({USE_ZERO_PAGE} is not 1)")
    size = thp_size()
    m = memory.mmap_anonymous(size, align=size)
    memory.madvise(m.addr, size, "MADV_HUGEPAGE")
    memory.touch(m.addr, PAGE_SIZE)  # one read fault: the huge zero PMD, or one zero PTE
    entries = pagemap.read(m.addr, size // PAGE_SIZE)
    if not all(e.present for e in entries):
        m.close()
        raise SkipScenario("a read fault did not map the huge zero page over the whole THP range")
    return m


def run(ctx: ScenarioContext) -> Outcome:
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    m = huge_zero_range()
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)
    other = m.addr + m.length // 2  # a page the split leaves alone
    ctx.note("pagemap_other_before_split", page_flags(pagemap.read(other)[0]))
    uffd.writeprotect(m.addr, PAGE_SIZE, protect=False)  # splits the huge zero PMD
    ctx.note("pagemap_other_after_split", page_flags(pagemap.read(other)[0]))
    ctx.hand_over(uffd, m.addr, m.length, rescue="unprotect")
    out = trap_real_write(ctx, uffd, page_view(other))
    out.reason = f"after un-protecting one page of a protected huge zero PMD, a write to another: {out.reason}"
    return out
