# SPDX-License-Identifier: GPL-2.0-only
"""PAGEMAP_SCAN (6.7+) and asynchronous uffd-wp on the running kernel: the ioctl's regions, the written
state it reads and clears, holes, shmem and hugetlb; fallocate(); what `uffdprobe features` says of them.
Each test asserts what the kernel answered; a kernel without the interface skips with the probed reason."""

import errno
import os

import pytest

from uffdprobe.uffd import features, memory, pagemap
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.pagemap import Category

NPAGES = 8


@pytest.fixture
def scan_ok():
    why = pagemap.scan_unsupported()
    if why:
        pytest.skip(why)


def _async_wp(uffd, kf, extra: Feature = Feature(0)) -> None:
    wanted = Feature.PAGEFAULT_FLAG_WP | Feature.WP_ASYNC | extra
    if kf.feature_bits & int(wanted) != int(wanted):
        pytest.skip(f"kernel {kf.kernel['release']} lacks {wanted!r} (offers {kf.feature_bits:#x})")
    uffd.api(wanted)


def _pages(regions, category: Category) -> set:
    """Page indexes (from the regions' own addresses) whose region has `category`."""
    return {a for r in regions if r.categories & category for a in range(r.start, r.end, PAGE_SIZE)}


def test_categories_are_the_uapi_numbers_the_module_was_built_with():
    from uffdprobe.uffd._ffi import constants

    built = {k[len("PAGE_IS_") :]: v for k, v in constants["pagemap_scan"].items() if k.startswith("PAGE_IS_")}
    assert built == {c.name: c.value for c in Category}


def test_scan_reports_present_pages_and_holes(scan_ok):
    with memory.mmap_anonymous(NPAGES * PAGE_SIZE) as m:
        memory.touch(m.page(2), 3 * PAGE_SIZE, write=True, value=5)
        regions, walk_end = pagemap.scan(m.addr, m.addr + m.length, report=Category.PRESENT)
        assert walk_end == m.addr + m.length
        assert _pages(regions, Category.PRESENT) == {m.page(i) for i in (2, 3, 4)}
        only, _ = pagemap.scan(m.addr, m.addr + m.length, require=Category.PRESENT, report=Category.PRESENT)
        assert [(r.start, r.end) for r in only] == [(m.page(2), m.page(5))] and only[0].pages == 3


def test_written_state_is_read_and_cleared_under_wp_async(uffd, kf, scan_ok):
    """WP_ASYNC + PAGEMAP_SCAN, CRIU's dirty tracking: every populated page starts written, WP_MATCHING
    clears (protects) them, a later write marks exactly its page again without any uffd message."""
    _async_wp(uffd, kf)
    with memory.mmap_anonymous(NPAGES * PAGE_SIZE) as m:
        memory.touch(m.addr, m.length, write=True, value=1)
        uffd.register(m.addr, m.length, RegisterMode.WP)
        first, _ = pagemap.scan(
            m.addr,
            m.addr + m.length,
            wp_matching=True,
            check_wpasync=True,
            require=Category.WRITTEN,
            report=Category.WRITTEN,
        )
        assert _pages(first, Category.WRITTEN) == {m.page(i) for i in range(NPAGES)}
        assert all(e.uffd_wp for e in pagemap.read(m.addr, NPAGES)), "WP_MATCHING protected what it matched"
        m.write(3 * PAGE_SIZE, b"\x07")
        m.write(6 * PAGE_SIZE + 100, b"\x08")
        after, _ = pagemap.scan(
            m.addr,
            m.addr + m.length,
            require=Category.WRITTEN,
            report=Category.WRITTEN | Category.PRESENT | Category.WPALLOWED,
        )
        assert _pages(after, Category.WRITTEN) == {m.page(3), m.page(6)}
        assert all(r.categories & Category.WPALLOWED for r in after)
        assert uffd.read() == [], "asynchronous WP resolves the faults in the kernel"
        assert m.read(3 * PAGE_SIZE, 1) == b"\x07" and m.read(6 * PAGE_SIZE + 100, 1) == b"\x08"


def test_wp_unpopulated_holes_count_as_not_written(uffd, kf, scan_ok):
    """With WP_UNPOPULATED, protecting a range with holes leaves markers: the holes read as not written
    until touched (6.12 stable's 'written state for unpopulated ptes' fix), and a write to one shows."""
    _async_wp(uffd, kf, Feature.WP_UNPOPULATED)
    with memory.mmap_anonymous(NPAGES * PAGE_SIZE) as m:
        memory.touch(m.addr, PAGE_SIZE, write=True, value=1)
        uffd.register(m.addr, m.length, RegisterMode.WP)
        uffd.writeprotect(m.addr, m.length, True)
        clean, _ = pagemap.scan(m.addr, m.addr + m.length, require=Category.WRITTEN, report=Category.WRITTEN)
        assert clean == [], f"nothing written since protecting: {clean}"
        m.write(5 * PAGE_SIZE, b"\x09")
        dirty, _ = pagemap.scan(m.addr, m.addr + m.length, require=Category.WRITTEN, report=Category.WRITTEN)
        assert _pages(dirty, Category.WRITTEN) == {m.page(5)}


def test_check_wpasync_refuses_a_range_without_async_wp(scan_ok):
    with memory.mmap_anonymous(PAGE_SIZE) as m, pytest.raises(UffdError) as exc:
        pagemap.scan(m.addr, m.addr + PAGE_SIZE, wp_matching=True, check_wpasync=True)
    assert exc.value.errno == errno.EPERM and exc.value.call == "ioctl(PAGEMAP_SCAN)"


def test_scan_names_file_pages_of_a_shared_memfd(scan_ok):
    fd = memory.memfd_create("uffdprobe-scan")
    try:
        os.ftruncate(fd, 2 * PAGE_SIZE)
        with memory.mmap_fd(fd, 2 * PAGE_SIZE) as m:
            m.write(0, b"x")
            regions, _ = pagemap.scan(m.addr, m.addr + m.length, report=Category.FILE | Category.PRESENT)
            assert _pages(regions, Category.FILE | Category.PRESENT) >= {m.addr}
            assert all(r.categories & Category.FILE for r in regions if r.categories & Category.PRESENT)
    finally:
        os.close(fd)


def test_max_pages_bounds_the_walk(scan_ok):
    with memory.mmap_anonymous(NPAGES * PAGE_SIZE) as m:
        memory.touch(m.addr, m.length, write=True, value=1)
        regions, walk_end = pagemap.scan(
            m.addr, m.addr + m.length, require=Category.PRESENT, report=Category.PRESENT, max_pages=2
        )
        assert sum(r.pages for r in regions) == 2 and walk_end == m.page(2)


def test_fallocate_allocates_and_punches_holes():
    fd = memory.memfd_create("uffdprobe-falloc")
    try:
        os.ftruncate(fd, 4 * PAGE_SIZE)
        memory.fallocate(fd, 0, 4 * PAGE_SIZE)
        assert os.fstat(fd).st_blocks * 512 >= 4 * PAGE_SIZE
        os.pwrite(fd, b"kept", 3 * PAGE_SIZE)
        memory.fallocate(fd, 0, 2 * PAGE_SIZE, punch_hole=True)
        assert os.fstat(fd).st_size == 4 * PAGE_SIZE, "a punched hole keeps the size"
        assert os.fstat(fd).st_blocks * 512 == 2 * PAGE_SIZE
        assert os.pread(fd, 4, 3 * PAGE_SIZE) == b"kept" and os.pread(fd, 4, 0) == bytes(4)
        with pytest.raises(UffdError) as exc:
            memory.fallocate(fd, 0, 0)
        assert exc.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_features_report_shmem_registration_and_pagemap_scan(kf):
    """`uffdprobe features` probes a memfd page as it probes an anonymous one, and PAGEMAP_SCAN."""
    text = features.format_text(kf)
    assert "shmem register WP:" in text and "PAGEMAP_SCAN:" in text
    if kf.has(Feature.MINOR_SHMEM):
        assert "CONTINUE" in kf.shmem_ioctls["MINOR"]
    else:
        assert kf.shmem_ioctls["MINOR"][0].startswith("refused")
    if kf.has(Feature.WP_HUGETLBFS_SHMEM):
        assert "WRITEPROTECT" in kf.shmem_ioctls["WP"]
    assert kf.pagemap_scan == (pagemap.scan_unsupported() or "available")
