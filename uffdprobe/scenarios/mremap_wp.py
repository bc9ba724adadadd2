# SPDX-License-Identifier: GPL-2.0-only
"""mremap() of a uffd-wp range by a uffd without UFFD_FEATURE_EVENT_REMAP must not carry the protection to the
new, unregistered VMA (CVE-2025-21696, fixed by 0cef0bb836e3).

The page is protected, moved, and its new range registered for uffd-wp again by the same program (as a
tracker that re-registers what moved does) without protecting anything: a write there must simply land.
With the stale bit it raises a uffd-wp fault that nobody expects, and the writing thread blocks in
handle_userfault for good: HANG is what user space sees, so that is the verdict (the supervisor rescues
the writer by un-protecting the new range).
"""

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from .common import PATTERN, page_flags
from .context import ScenarioContext, watched
from .memkinds import allocate


WRITTEN = b"written after mremap"


def run(ctx: ScenarioContext) -> Outcome:
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)  # no UFFD_FEATURE_EVENT_REMAP
    m = allocate(ctx.memory, PATTERN)
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)
    ctx.note("pagemap_before_mremap", page_flags(pagemap.read(m.addr)[0]))
    # The destination: a fresh range of the same size and alignment, replaced by the move.
    dest = memory.mmap_anonymous(m.length, align=m.length if m.length > PAGE_SIZE else PAGE_SIZE)
    memory.mremap_fixed(m.addr, m.length, dest.addr)
    moved = dest
    after = pagemap.read(moved.addr)[0]
    ctx.note("pagemap_after_mremap", page_flags(after))
    uffd.register(moved.addr, moved.length, RegisterMode.WP)
    ctx.hand_over(uffd, moved.addr, moved.length, rescue="unprotect")
    with watched(ctx, "write to the moved page, which nobody write-protected"):
        moved.write(0, WRITTEN)
    evidence = {"uffd_messages": [repr(x) for x in uffd.read()]}
    if moved.read(0, len(WRITTEN)) != WRITTEN or moved.read(len(WRITTEN), 16) != PATTERN[len(WRITTEN) :][:16]:
        return Outcome(Verdict.ERROR, "the moved page does not hold the old data and the new write", evidence)
    if after.uffd_wp:
        # Nobody here reads the uffd: the write got through only because the supervisor un-protected it.
        return Outcome(
            Verdict.HANG,
            "the moved page kept its uffd-wp bit (pagemap): the write raised a WP fault "
            "nobody here answers and completed only once the range was un-protected",
            evidence,
        )
    return Outcome(
        Verdict.PASS,
        "mremap() without EVENT_REMAP cleared uffd-wp: the moved page showed no "
        "protection and a write to it, re-registered for uffd-wp, landed without a fault",
        evidence,
    )
