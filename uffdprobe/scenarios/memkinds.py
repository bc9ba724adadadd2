# SPDX-License-Identifier: GPL-2.0-only
"""Memory kinds a scenario runs on: anon-4k (one small page), anon-thp (one PMD-mapped THP), anon-swap
(one small page paged out to swap with MADV_PAGEOUT before the question is asked), shmem (one page of a
memfd) and hugetlb (one huge page of a memfd made with MFD_HUGETLB). The memfd kinds are mapped
MAP_SHARED unless the question needs a private mapping (the COW questions ask for one)."""

import errno
import os
import re
import time
from typing import Optional

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.features import thp_mode
from uffdprobe.uffd.memory import PAGE_SIZE, Mapping

#: The kinds every scenario runs on unless its table row says otherwise.
KINDS = ("anon-4k", "anon-thp")
#: File-backed kinds: a memfd (shmem) and a hugetlbfs memfd (hugetlb).
MEMFD_KINDS = ("shmem", "hugetlb")
#: Every kind there is (--memory's choices); the others only where a scenario's row asks for them.
ALL_KINDS = KINDS + ("anon-swap",) + MEMFD_KINDS
COW_KINDS = KINDS + ("anon-swap",)
#: Huge pages a booted guest reserves (vm.nr_hugepages) when a hugetlb cell is planned: a private
#: mapping's COW after fork() needs a second page, a defect question a few more.
GUEST_HUGEPAGES = 16
#: Set by the host for a guest's `uffdprobe run` when a hugetlb cell is planned: the huge pages to reserve.
HUGEPAGES_ENV = "UFFDPROBE_GUEST_HUGEPAGES"
#: The memory word of a row that is no memory kind: a kernel selftest's case (and an --exec program).
NO_MEMORY = "-"


class SkipScenario(Exception):
    """Raised in a scenario when a probed precondition does not hold; becomes SKIP with the reason."""


def thp_size() -> int:
    """The PMD-mapped THP size this kernel uses (hpage_pmd_size), in bytes; 2 MiB when it does not say."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 2 << 20


def unavailable(kind: str) -> Optional[str]:
    """Why this kernel cannot offer `kind`, probed; None when it can."""
    if kind == "anon-thp":
        mode = thp_mode()
        if mode is None:
            return "kernel has no transparent hugepages (CONFIG_TRANSPARENT_HUGEPAGE off)"
        if mode == "never":
            return "transparent hugepages disabled (enabled=never)"
    elif kind == "anon-swap":
        return no_swap()
    elif kind == "shmem":
        return no_memfd()
    elif kind == "hugetlb":
        return no_memfd() or no_hugepages()
    elif kind != "anon-4k":
        return f"unknown memory kind {kind!r}"
    return None


def no_swap() -> Optional[str]:
    """Why nothing can be paged out here (no active swap with room for a page, per /proc/swaps), or None."""
    try:
        with open("/proc/swaps") as f:
            rows = [line.split() for line in f.read().splitlines()[1:] if line.strip()]
    except OSError:
        return "no /proc/swaps: the kernel has no swap support (CONFIG_SWAP off)"
    if not rows:
        return "no swap is active (swapon a device or file; in a guest uffdprobe adds a swap disk)"
    if not any(
        int(r[2]) - int(r[3]) >= PAGE_SIZE // 1024 for r in rows if len(r) >= 4 and r[2].isdigit() and r[3].isdigit()
    ):
        return "every active swap area is full"
    return None


def no_memfd() -> Optional[str]:
    """Why this kernel makes no memfd (memfd_create refused), or None."""
    try:
        os.close(memory.memfd_create("uffdprobe-probe"))
    except UffdError as exc:
        return f"memfd_create refused: {exc.strerror} (kernel without CONFIG_MEMFD_CREATE)"
    return None


def hugepage_size() -> int:
    """The default huge page size (Hugepagesize in /proc/meminfo), 2 MiB when the kernel does not say."""
    return _meminfo("Hugepagesize", 2048) * 1024


def _meminfo(field: str, default: int) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return default


def no_hugepages(needed: int = 2) -> Optional[str]:
    """Why no `needed` huge pages can be had here (no hugetlbfs, none free), probed; None when they can."""
    if not os.path.exists("/proc/sys/vm/nr_hugepages"):
        return "kernel has no hugetlb pages (CONFIG_HUGETLBFS off: no /proc/sys/vm/nr_hugepages)"
    free = _meminfo("HugePages_Free", 0) - _meminfo("HugePages_Rsvd", 0)
    if free < needed:
        return (
            f"{max(free, 0)} huge pages free, {needed} needed (set vm.nr_hugepages; a guest uffdprobe "
            f"boots reserves {GUEST_HUGEPAGES} when a hugetlb cell is planned)"
        )
    return None


def reserve_guest_hugepages() -> str:
    """In a guest uffdprobe booted with a hugetlb cell planned ($UFFDPROBE_GUEST_HUGEPAGES set by the host):
    raise vm.nr_hugepages to that many; one line saying what happened, '' when nothing was asked. Failures
    are said, never raised: the hugetlb kind then SKIPs with the probed reason."""
    wanted = os.environ.get(HUGEPAGES_ENV, "")
    if not wanted.isdigit():
        return ""
    count = int(wanted)
    try:
        with open("/proc/sys/vm/nr_hugepages", "r+") as f:
            if int(f.read() or 0) >= count:
                return ""
            f.seek(0)
            f.write(str(count))
        got = _meminfo("HugePages_Total", 0)
    except (OSError, ValueError) as exc:
        return f"guest huge pages: vm.nr_hugepages not set ({exc}); hugetlb will skip"
    return f"guest huge pages: {got} of {count} reserved ({hugepage_size() >> 20} MiB each)"


def memfd_mapping(kind: str, shared: bool = True, length: int = 0, at: int = 0) -> Mapping:
    """`length` bytes (one page of `kind` by default) of a fresh memfd, hugetlbfs for "hugetlb", mapped
    shared or private (at `at`, inside a reservation of our own, when given); the fd is closed (the
    mapping holds the file)."""
    hugetlb = kind == "hugetlb"
    length = length or (hugepage_size() if hugetlb else PAGE_SIZE)
    flags = memory.MEMFD["MFD_CLOEXEC"] | (memory.MEMFD["MFD_HUGETLB"] if hugetlb else 0)
    fd = memory.memfd_create(f"uffdprobe-{kind}", flags)
    try:
        os.ftruncate(fd, length)
        try:
            return memory.mmap_fd(fd, length, shared=shared, at=at)
        except UffdError as exc:
            if hugetlb and exc.errno == errno.ENOMEM:
                raise SkipScenario(f"no huge page to map ({no_hugepages() or 'mmap: ENOMEM'})") from None
            raise
    finally:
        os.close(fd)


def allocate(kind: str, fill: bytes, shared: Optional[bool] = None) -> Mapping:
    """A populated mapping of `kind`, every page starting with `fill`: anonymous private or memfd shared
    by default, `shared` says otherwise (a COW question asks for a private one)."""
    if kind in MEMFD_KINDS:
        m = memfd_mapping(kind, shared=True if shared is None else shared)
    elif kind in ("anon-4k", "anon-swap"):
        m = memory.mmap_anonymous(PAGE_SIZE, shared=bool(shared))
    else:
        size = thp_size()
        m = memory.mmap_anonymous(size, align=size)
        memory.madvise(m.addr, size, "MADV_HUGEPAGE")
    for off in range(0, m.length, PAGE_SIZE):
        m.write(off, fill)
    if kind == "anon-thp" and anon_huge_kb(m.addr) < m.length // 1024:
        m.close()
        raise SkipScenario("the kernel did not back the range with a THP (fragmented memory or defrag off)")
    if kind == "anon-swap":
        page_out(m)
    return m


def page_out(m: Mapping, tries: int = 20) -> None:
    """MADV_PAGEOUT every page of `m` until /proc/self/pagemap says each is swapped (bit 62), bounded;
    SkipScenario when the kernel keeps it in memory (no MADV_PAGEOUT, a full swap area)."""
    npages = m.length // PAGE_SIZE
    for _ in range(tries):
        try:
            memory.madvise(m.addr, m.length, "MADV_PAGEOUT")
        except OSError as exc:
            m.close()
            raise SkipScenario(f"MADV_PAGEOUT failed ({exc}): the kernel cannot page out on request") from None
        if all(e.swapped and not e.present for e in pagemap.read(m.addr, npages)):
            return
        time.sleep(0.05)
    m.close()
    raise SkipScenario(f"MADV_PAGEOUT left the page in memory {tries} times (pagemap bit 62 never set)")


def anon_huge_kb(addr: int, pid: object = "self") -> int:
    """AnonHugePages of the VMA holding `addr`, from /proc/PID/smaps (this process's by default)."""
    with open(f"/proc/{pid}/smaps") as f:
        text = f.read()
    inside = False
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if m:
            inside = int(m.group(1), 16) <= addr < int(m.group(2), 16)
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0
