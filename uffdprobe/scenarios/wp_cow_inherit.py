# SPDX-License-Identifier: GPL-2.0-only
"""A write-protected page, shared after fork(), read through GUP by the sharer: does WP survive?

On kernels whose read-GUP breaks COW (forced COW, FOLL_BREAK_COW, or FAULT_FLAG_UNSHARE for a
pin) the protected page is replaced by a copy; the copy must keep the uffd-wp bit, or a later
real write goes through untrapped: WP_LOST. On the memfd kinds the mapping is private (a shared one
is never COWed). On hugetlb the same question is the catalogue entry wp-hugetlb-unshare: 6.1's
hugetlb_wp() builds the unshared copy's pte without the uffd-wp bit (fixed by 0f230bc24b6e, v6.4).
"""

import os

from uffdprobe.uffd import pagemap
from uffdprobe.verdicts import Outcome, Verdict
from .common import PATTERN, fork_reader, page_flags, read_exactly, reap, wp_page
from .context import ScenarioContext, watched
from .wp_real_write import trap_real_write

# Cc: stable, yet Debian's 6.1.192 does not carry it


def run(ctx: ScenarioContext) -> Outcome:
    uffd, m = wp_page(ctx, shared=False)
    # No MADV_DONTFORK here: the reader shares the protected page copy-on-write.
    pid, go_w, data_r = fork_reader(os.getpid(), m.addr, len(PATTERN))
    try:
        shared = pagemap.read(m.addr)[0]
        ctx.note("pagemap_shared", page_flags(shared))
        with watched(ctx, "process_vm_readv of the shared write-protected page", pid=pid):
            os.write(go_w, b"G")
            got = read_exactly(data_r, len(PATTERN), ctx.params.get("reader_timeout_s", 60.0))
        after = pagemap.read(m.addr)[0]
        copied = shared.pfn != after.pfn if shared.pfn and after.pfn else None
        ctx.note("pagemap_after_gup", page_flags(after))
        ctx.note("cow_broken_by_read_gup", copied)
        if got != PATTERN:
            return Outcome(Verdict.ERROR, f"the reader got {len(got)} unexpected bytes")
        out = trap_real_write(ctx, uffd, m)
    finally:
        os.close(go_w), os.close(data_r)
        status = reap(pid)
    out.evidence["sharer_exit"] = status
    what = {
        True: "after the read-GUP copied the page",
        False: "the read-GUP did not copy the page",
        None: "copy unknown (no PFN)",
    }[copied]
    out.reason = f"{out.reason} ({what})"
    return out
