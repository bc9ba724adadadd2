# SPDX-License-Identifier: GPL-2.0-only
"""UFFDIO_COPY with UFFDIO_COPY_MODE_WP into a VMA that is read-only at the time (fixed by 0e88904cb700).

Until v5.18 the copy set the uffd-wp bit only on a writable VMA: after mprotect(PROT_READ|PROT_WRITE)
the copied page took a write without the uffd-wp fault the caller asked for.
"""

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import MMAN, PAGE_SIZE, PROT_RW
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome
from .common import PATTERN, page_flags
from .context import ScenarioContext
from .wp_real_write import trap_real_write


def run(ctx: ScenarioContext) -> Outcome:
    """Read-only VMA, register MISSING|WP, UFFDIO_COPY with MODE_WP, mprotect(RW), then a real write."""
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    m = memory.mmap_anonymous(PAGE_SIZE)
    memory.mprotect(m.addr, m.length, MMAN["PROT_READ"])
    uffd.register(m.addr, m.length, RegisterMode.MISSING | RegisterMode.WP)
    with memory.mmap_anonymous(PAGE_SIZE) as source:
        source.write(0, PATTERN)
        uffd.copy(m.addr, source.addr, PAGE_SIZE, wp=True)
    ctx.note("pagemap_after_copy", page_flags(pagemap.read(m.addr)[0]))
    memory.mprotect(m.addr, m.length, PROT_RW)
    ctx.note("pagemap_after_mprotect_rw", page_flags(pagemap.read(m.addr)[0]))
    ctx.hand_over(uffd, m.addr, m.length, rescue="unprotect")
    out = trap_real_write(ctx, uffd, m)
    out.reason = f"UFFDIO_COPY_MODE_WP into a read-only VMA, then mprotect(RW): {out.reason}"
    return out
