"""Memory kinds a scenario runs on: anon-4k (one small page) and anon-thp (one PMD-mapped THP)."""
import re
from typing import Optional

from uffdprobe.uffd import memory
from uffdprobe.uffd.features import thp_mode
from uffdprobe.uffd.memory import PAGE_SIZE, Mapping

KINDS = ("anon-4k", "anon-thp")


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
    elif kind != "anon-4k":
        return f"unknown memory kind {kind!r}"
    return None


def allocate(kind: str, fill: bytes, shared: bool = False) -> Mapping:
    """A populated anonymous mapping of `kind` (private unless `shared`), every page starting with `fill`."""
    if kind == "anon-4k":
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
    return m


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
