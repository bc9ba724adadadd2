"""/proc/PID/pagemap entries (Documentation/admin-guide/mm/pagemap.rst): present, swapped, uffd-wp, exclusive."""
import os
import struct
from dataclasses import dataclass
from typing import List, Union

from .memory import PAGE_SIZE

# Bit positions fixed by the pagemap ABI document (no uapi header defines them).
_PRESENT, _SWAPPED, _FILE_SHARED, _UFFD_WP, _EXCLUSIVE, _SOFT_DIRTY = 63, 62, 61, 57, 56, 55
_PFN_MASK = (1 << 55) - 1


@dataclass(frozen=True)
class PageEntry:
    """One decoded 64-bit pagemap entry; pfn is 0 without CAP_SYS_ADMIN."""
    raw: int

    def _bit(self, n: int) -> bool:
        return bool(self.raw >> n & 1)

    present = property(lambda self: self._bit(_PRESENT))
    swapped = property(lambda self: self._bit(_SWAPPED))
    file_or_shared_anon = property(lambda self: self._bit(_FILE_SHARED))
    uffd_wp = property(lambda self: self._bit(_UFFD_WP))
    exclusive = property(lambda self: self._bit(_EXCLUSIVE))
    soft_dirty = property(lambda self: self._bit(_SOFT_DIRTY))
    pfn = property(lambda self: self.raw & _PFN_MASK if self.present else 0)


def read(addr: int, npages: int = 1, pid: Union[int, str] = "self") -> List[PageEntry]:
    """Entries for `npages` pages from `addr` in process `pid`."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.pread(fd, 8 * npages, addr // PAGE_SIZE * 8)
    finally:
        os.close(fd)
    return [PageEntry(v) for v in struct.unpack(f"={len(data) // 8}Q", data)]
