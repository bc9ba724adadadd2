"""Memory kinds a scenario runs on: anon-4k (one small page), anon-thp (one PMD-mapped THP) and anon-swap
(one small page paged out to swap with MADV_PAGEOUT before the question is asked)."""
import re
import time
from typing import Optional

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.features import thp_mode
from uffdprobe.uffd.memory import PAGE_SIZE, Mapping

#: The kinds every scenario runs on unless its table row says otherwise.
KINDS = ("anon-4k", "anon-thp")
#: Every kind there is (--memory's choices); anon-swap only where a scenario asks for it (the COW ones).
ALL_KINDS = KINDS + ("anon-swap",)
COW_KINDS = ALL_KINDS
#: The memory word of a row that is no memory kind: a kernel selftest's case (and an --exec program).
NO_MEMORY = "-"


class SkipScenario(Exception):
    """Raised in a scenario when a probed precondition does not hold; becomes SKIP with the reason."""


def thp_size() -> int:
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
    if not any(int(r[2]) - int(r[3]) >= PAGE_SIZE // 1024 for r in rows if len(r) >= 4 and r[2].isdigit()
               and r[3].isdigit()):
        return "every active swap area is full"
    return None


def allocate(kind: str, fill: bytes, shared: bool = False) -> Mapping:
    """A populated anonymous mapping of `kind` (private unless `shared`), every page starting with `fill`."""
    if kind in ("anon-4k", "anon-swap"):
        m = memory.mmap_anonymous(PAGE_SIZE, shared=shared)
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


def anon_huge_kb(addr: int) -> int:
    """AnonHugePages of the VMA holding `addr`, from /proc/self/smaps."""
    with open("/proc/self/smaps") as f:
        text = f.read()
    inside = False
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if m:
            inside = int(m.group(1), 16) <= addr < int(m.group(2), 16)
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0
