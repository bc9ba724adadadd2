# SPDX-License-Identifier: GPL-2.0-only
"""/proc/PID/pagemap (Documentation/admin-guide/mm/pagemap.rst): its 64-bit entries (present, swapped,
uffd-wp, exclusive) and its PAGEMAP_SCAN ioctl (6.7+: page categories by region, written state under
UFFD_FEATURE_WP_ASYNC, write-protect what matched)."""

import enum
import errno
import os
import struct
from dataclasses import dataclass
from typing import List, Tuple, Union

from ._ffi import constants, ffi, lib
from .errors import error_for
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


class Category(enum.IntFlag):
    """PAGE_IS_* categories of a PAGEMAP_SCAN region (uapi linux/fs.h, 6.7; the same numbers in
    native/uffd_uapi_fallback.h, checked against the compiled module by tests/test_pagemap_scan.py)."""

    WPALLOWED = 1 << 0
    WRITTEN = 1 << 1
    FILE = 1 << 2
    PRESENT = 1 << 3
    SWAPPED = 1 << 4
    PFNZERO = 1 << 5
    HUGE = 1 << 6
    SOFT_DIRTY = 1 << 7


#: PM_SCAN_WP_MATCHING: write-protect the pages that matched (the WP_ASYNC "clear written" step).
WP_MATCHING = constants["pagemap_scan"]["PM_SCAN_WP_MATCHING"]
#: PM_SCAN_CHECK_WPASYNC: refuse (EPERM) a range with a page not registered for asynchronous uffd-wp.
CHECK_WPASYNC = constants["pagemap_scan"]["PM_SCAN_CHECK_WPASYNC"]


@dataclass(frozen=True)
class Region:
    """One page_region of a PAGEMAP_SCAN answer: [start, end) whose pages share `categories`."""

    start: int
    end: int
    categories: Category

    @property
    def pages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE


def scan(
    start: int,
    end: int,
    *,
    wp_matching: bool = False,
    check_wpasync: bool = False,
    require: Category = Category(0),
    inverted: Category = Category(0),
    anyof: Category = Category(0),
    report: Category = ~Category(0),
    max_pages: int = 0,
    max_regions: int = 512,
    pid: Union[int, str] = "self",
) -> Tuple[List[Region], int]:
    """PAGEMAP_SCAN over [start, end) of `pid`: the regions whose categories match (`require` all of them,
    `inverted` ones counted as set when clear, `anyof` at least one), reporting the `report` categories,
    and the address where the walk stopped. A kernel without the ioctl (before 6.7) raises
    NotSupportedError (ENOTTY)."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        out = ffi.new("struct up_region[]", max_regions)
        walk_end = ffi.new("uint64_t *")
        flags = (WP_MATCHING if wp_matching else 0) | (CHECK_WPASYNC if check_wpasync else 0)
        n = lib.up_pagemap_scan(
            fd,
            start,
            end,
            flags,
            max_pages,
            int(inverted),
            int(require),
            int(anyof),
            int(report),
            out,
            max_regions,
            walk_end,
        )
        if n < 0:
            err = ffi.errno
            raise error_for(
                err,
                "ioctl(PAGEMAP_SCAN)",
                start,
                end - start,
                hint="the kernel has no PAGEMAP_SCAN (6.7+)" if err == errno.ENOTTY else "",
            )
        return [Region(out[i].start, out[i].end, Category(out[i].categories)) for i in range(n)], walk_end[0]
    finally:
        os.close(fd)


def scan_unsupported() -> str:
    """Why this kernel cannot answer PAGEMAP_SCAN (probed on one page of our own), or '' when it can."""
    from .memory import mmap_anonymous

    try:
        with mmap_anonymous(PAGE_SIZE) as m:
            scan(m.addr, m.addr + PAGE_SIZE)
    except OSError as exc:
        err = exc.errno or 0
        return (
            "kernel has no PAGEMAP_SCAN ioctl (ENOTTY; it is 6.7+)"
            if err == errno.ENOTTY
            else f"PAGEMAP_SCAN refused on a page of our own: {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
        )
    return ""
