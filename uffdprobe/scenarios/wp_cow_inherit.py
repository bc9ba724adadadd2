"""A write-protected page, shared after fork(), read through GUP by the sharer: does WP survive?

On kernels whose read-GUP breaks COW (forced COW, FOLL_BREAK_COW, or FAULT_FLAG_UNSHARE for a
pin) the protected page is replaced by a copy; the copy must keep the uffd-wp bit, or a later
real write goes through untrapped: WP_LOST.
"""
import os

from .. import memory, pagemap
from ..verdicts import Outcome, Verdict
from .common import PATTERN, page_flags, read_exactly, reap, wp_page
from .context import ScenarioContext
from .wp_real_write import trap_real_write


def run(ctx: ScenarioContext) -> Outcome:
    uffd, m = wp_page(ctx)
    target = os.getpid()
    go_r, go_w = os.pipe()
    data_r, data_w = os.pipe()
    pid = os.fork()                     # the child shares the protected page copy-on-write
    if pid == 0:
        _sharer(target, m, go_r, data_w)
    os.close(go_r), os.close(data_w)
    try:
        shared = pagemap.read(m.addr)[0]
        ctx.note("pagemap_shared", page_flags(shared))
        ctx.watch("process_vm_readv of the shared write-protected page", pid=pid)
        os.write(go_w, b"G")
        got = read_exactly(data_r, len(PATTERN), ctx.params.get("reader_timeout_s", 60.0))
        ctx.unwatch()
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
    what = {True: "after the read-GUP copied the page", False: "the read-GUP did not copy the page",
            None: "copy unknown (no PFN)"}[copied]
    out.reason = f"{out.reason} ({what})"
    return out


def _sharer(target: int, m, go_r: int, data_w: int) -> None:
    """Wait for the go, read the parent's protected page by process_vm_readv, send it back."""
    code = 0
    try:
        if read_exactly(go_r, 1, 30.0) == b"G":
            with memory.mmap_anonymous(4096) as local:
                memory.process_vm_readv(target, local.addr, m.addr, len(PATTERN))
                os.write(data_w, local.read(0, len(PATTERN)))
    except BaseException:
        code = 3
    finally:
        os._exit(code)
