# SPDX-License-Identifier: GPL-2.0-only
"""Read-GUP of a uffd-write-protected page: vmsplice, O_DIRECT pwrite, process_vm_readv.

On kernels with 17839856fd58 the read becomes a write fault and raises a uffd WP fault that the
caller itself would have to answer: the supervisor sees the caller block and calls it HANG.
"""

import os
import stat
import tempfile

from uffdprobe.uffd import memory, odirect, pagemap
from uffdprobe.uffd.messages import as_data
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.verdicts import Outcome, Verdict
from .common import PATTERN, fork_reader, page_flags, read_exactly, reap, wp_page
from .context import ScenarioContext, watched
from .wp_real_write import trap_real_write


def _finish(ctx: ScenarioContext, uffd, m, call: str, got: bytes) -> Outcome:
    """PASS when the bytes came through intact, no fault was raised, and a real write still traps."""
    after = pagemap.read(m.addr)[0]
    pending = uffd.read()
    evidence = {"pagemap_after": page_flags(after), "uffd_messages_after": [as_data(x) for x in pending]}
    if pending:
        return Outcome(Verdict.ERROR, f"{call} returned but raised {len(pending)} uffd message(s)", evidence)
    if got != PATTERN:
        return Outcome(Verdict.ERROR, f"{call} moved {len(got)} bytes that differ from the page", evidence)
    out = trap_real_write(ctx, uffd, m)
    out.evidence.update(evidence)
    if out.verdict is Verdict.PASS:
        out.reason = f"{call} of the write-protected page completed without a uffd fault; a later write still trapped"
    else:
        out.reason = f"after {call}: {out.reason}"
    return out


def run_vmsplice(ctx: ScenarioContext) -> Outcome:
    uffd, m = wp_page(ctx)
    r, w = os.pipe()
    try:
        with watched(ctx, "vmsplice"):
            n = memory.vmsplice(w, m.addr, len(PATTERN))
        got = read_exactly(r, n, 5.0)
    finally:
        os.close(r), os.close(w)
    return _finish(ctx, uffd, m, "vmsplice", got)


def _open_target(target: str):
    """(fd, offset, cleanup) for an O_DIRECT block device, or a new file in an O_DIRECT directory."""
    if stat.S_ISBLK(os.stat(target).st_mode):
        return odirect.open_block_device(target), 0, lambda: None
    fd, path = tempfile.mkstemp(prefix="uffdprobe-odirect-", dir=target)
    os.close(fd)
    return memory.open_direct(path), 0, lambda: os.unlink(path)


def run_odirect(ctx: ScenarioContext) -> Outcome:
    uffd, m = wp_page(ctx)
    fd, offset, cleanup = _open_target(ctx.odirect_target)
    try:
        with memory.mmap_anonymous(PAGE_SIZE) as back:
            with watched(ctx, "O_DIRECT pwrite"):
                memory.pwrite_from(fd, m.addr, PAGE_SIZE, offset)
            memory.pread_into(fd, back.addr, PAGE_SIZE, offset)
            got = back.read(0, len(PATTERN))
    finally:
        os.close(fd)
        cleanup()
    ctx.note("odirect_target", ctx.odirect_target)
    return _finish(ctx, uffd, m, "O_DIRECT pwrite", got)


def run_process_vm_readv(ctx: ScenarioContext) -> Outcome:
    """A reader process (not sharing the page: MADV_DONTFORK) reads it with process_vm_readv."""
    uffd, m = wp_page(ctx)
    memory.madvise(m.addr, m.length, "MADV_DONTFORK")
    pid, go, data = fork_reader(os.getpid(), m.addr, len(PATTERN))
    try:
        with watched(ctx, "process_vm_readv", pid=pid):
            os.write(go, b"G")
            got = read_exactly(data, len(PATTERN), ctx.params.get("reader_timeout_s", 60.0))
    finally:
        os.close(go), os.close(data)
        status = reap(pid)
    ctx.note("reader_exit", status)
    return _finish(ctx, uffd, m, "process_vm_readv", got)
