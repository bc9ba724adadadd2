# SPDX-License-Identifier: GPL-2.0-only
"""UFFDIO_CONTINUE on shmem: a MINOR fault on a page that exists only because fallocate() allocated it.

The monitor answers the fault with UFFDIO_CONTINUE ("map the page cache page that is there"). Before
73f37dbcfe17 the lookup behind CONTINUE used SGP_READ, which treats a fallocated, not yet uptodate page as
a hole, so the kernel refused with EFAULT a request that is valid: REFUSED, the errno as evidence. A page
written through another mapping first (uptodate) is the control: CONTINUE maps it on every kernel.
"""

import errno
import os
from typing import Any, Dict

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import Feature, PageFaultFlag, RegisterMode, names
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.messages import PageFault, as_data
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from .common import Bounded, page_flags
from .context import ScenarioContext
from .memkinds import SkipScenario


CONTROL = b"written through the other mapping"


def minor_shmem_uffd() -> Userfaultfd:
    """A userfaultfd with UFFD_FEATURE_MINOR_SHMEM on; SkipScenario where the kernel lacks the feature."""
    uffd = Userfaultfd.open()
    try:
        uffd.api(Feature.MINOR_SHMEM)
    except UffdError as exc:
        uffd.close()
        if exc.errno == errno.EINVAL:
            raise SkipScenario("kernel lacks UFFD_FEATURE_MINOR_SHMEM (MINOR faults on shmem, v5.14)") from None
        raise
    return uffd


def run(ctx: ScenarioContext) -> Outcome:
    uffd = minor_shmem_uffd()
    fd = memory.memfd_create("uffdprobe-continue")
    try:
        os.ftruncate(fd, 2 * PAGE_SIZE)
        memory.fallocate(fd, 0, 2 * PAGE_SIZE)  # both pages allocated, neither written
        with memory.mmap_fd(fd, 2 * PAGE_SIZE) as other:
            other.write(PAGE_SIZE, CONTROL)  # page 1 written (uptodate): the control
        area = memory.mmap_fd(fd, 2 * PAGE_SIZE)
    finally:
        os.close(fd)
    uffd.register(area.addr, area.length, RegisterMode.MINOR)
    ctx.hand_over(uffd, area.addr, area.length, rescue="unregister")
    reader = Bounded(lambda: area.read(0, 8), "minor-reader")
    msgs = uffd.wait(5.0)
    minor = [x for x in msgs if isinstance(x, PageFault) and x.address // PAGE_SIZE == area.addr // PAGE_SIZE]
    evidence: Dict[str, Any] = {"messages": [as_data(x) for x in msgs]}
    if not minor or not minor[0].flags & PageFaultFlag.MINOR:
        uffd.unregister(area.addr, area.length)
        reader.done(5.0)
        return Outcome(Verdict.ERROR, "reading the fallocated page raised no MINOR fault", evidence)
    evidence["fault_flags"] = names(minor[0].flags)
    try:
        evidence["fallocated_continued"] = uffd.continue_(area.addr, PAGE_SIZE)
        refused = None
    except UffdError as exc:
        refused = exc
        evidence.update(fallocated_errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)), fallocated_error=str(exc))
        uffd.unregister(area.addr, area.length)  # the reader then faults the page in without us
    read_back = reader.done(5.0) and reader.result
    evidence["reader_read"] = read_back.hex() if isinstance(read_back, bytes) else None
    if refused is None:
        evidence["control_continued"] = uffd.continue_(area.page(1), PAGE_SIZE)
    evidence["control_read"] = area.read(PAGE_SIZE, len(CONTROL)).decode(errors="replace")
    evidence["pagemap_after"] = page_flags(pagemap.read(area.addr)[0])
    area.close()
    if refused is not None:
        return Outcome(
            Verdict.REFUSED,
            "UFFDIO_CONTINUE on the fallocated shmem page the MINOR fault named "
            f"failed with {evidence['fallocated_errno']} ({os.strerror(refused.errno or 0)})",
            evidence,
        )
    if read_back != bytes(8):
        return Outcome(Verdict.ERROR, "the faulting read of the fallocated page did not return zeros", evidence)
    return Outcome(
        Verdict.PASS,
        "UFFDIO_CONTINUE mapped the fallocated page (read as zeros) and the written control page",
        evidence,
    )
