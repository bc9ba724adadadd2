# SPDX-License-Identifier: GPL-2.0-only
"""The bindings against the running kernel: faults served, write protection, events, errnos."""

import errno
import faulthandler
import os
import resource
import signal
from pathlib import Path

import pytest

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd._ffi import constants
from uffdprobe.uffd.errors import MappingGoneError, RangeExistsError, UffdError
from uffdprobe.uffd.flags import Feature, Ioctl, PageFaultFlag, RegisterMode, names
from uffdprobe.uffd.forking import fork_with_uffd
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.messages import PageFault, Remove
from uffdprobe.scenarios.common import reap
from uffdprobe.uffd.userfaultfd import Userfaultfd

PATTERN = bytes(range(256)) * (PAGE_SIZE // 256)


def test_api_reports_features_and_ioctls(uffd):
    info = uffd.api()
    assert info.ioctls & Ioctl.REGISTER and info.ioctls & Ioctl.UNREGISTER
    assert "REGISTER" in names(info.ioctls)


def test_api_twice_is_refused(uffd):
    uffd.api()
    with pytest.raises(UffdError) as exc:
        uffd.api()
    assert exc.value.errno == errno.EINVAL and exc.value.call == "UFFDIO_API"


def test_register_before_api_is_refused(uffd):
    with memory.mmap_anonymous(PAGE_SIZE) as m, pytest.raises(UffdError) as exc:
        uffd.register(m.addr, PAGE_SIZE, RegisterMode.MISSING)
    assert exc.value.errno == errno.EINVAL
    assert f"{m.addr:#x}" in str(exc.value)


def test_missing_fault_served_by_copy(uffd, faulter):
    uffd.api()
    with memory.mmap_anonymous(4 * PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        src.write(0, PATTERN)
        allowed = uffd.register(area.addr, area.length, RegisterMode.MISSING)
        assert allowed & Ioctl.COPY and allowed & Ioctl.ZEROPAGE
        f = faulter(lambda: area.read(PAGE_SIZE + 3, 16))
        msgs = uffd.wait(5)
        assert len(msgs) == 1 and isinstance(msgs[0], PageFault)
        fault = msgs[0]
        assert fault.address & ~(PAGE_SIZE - 1) == area.page(1)
        assert not fault.is_write and not fault.is_wp
        assert not f.done(0.2), "the reader must block until the fault is served"
        assert uffd.copy(area.page(1), src.addr, PAGE_SIZE) == PAGE_SIZE
        assert f.done(5) and f.error is None
        assert f.result == PATTERN[3:19]
        entry = pagemap.read(area.page(1))[0]
        assert entry.present and not pagemap.read(area.page(2))[0].present


def test_second_copy_is_eexist(uffd):
    uffd.api()
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        uffd.copy(area.addr, src.addr, PAGE_SIZE)
        with pytest.raises(RangeExistsError) as exc:
            uffd.copy(area.addr, src.addr, PAGE_SIZE)
    assert exc.value.errno == errno.EEXIST and exc.value.call == "UFFDIO_COPY"


def test_copy_into_unregistered_range_is_enoent(uffd):
    uffd.api()
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        with pytest.raises(MappingGoneError) as exc:
            uffd.copy(area.addr, src.addr, PAGE_SIZE)
    assert exc.value.errno == errno.ENOENT
    assert exc.value.start == area.addr and exc.value.length == PAGE_SIZE


def test_misaligned_register_is_einval(uffd):
    uffd.api()
    with memory.mmap_anonymous(2 * PAGE_SIZE) as area, pytest.raises(UffdError) as exc:
        uffd.register(area.addr + 1, PAGE_SIZE, RegisterMode.MISSING)
    assert exc.value.errno == errno.EINVAL and exc.value.call == "UFFDIO_REGISTER"


def test_misaligned_copy_is_einval(uffd):
    uffd.api()
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        with pytest.raises(UffdError) as exc:
            uffd.copy(area.addr, src.addr + 8, PAGE_SIZE - 8)
    assert exc.value.errno == errno.EINVAL


def test_zeropage(uffd):
    uffd.api()
    with memory.mmap_anonymous(2 * PAGE_SIZE) as area:
        uffd.register(area.addr, area.length, RegisterMode.MISSING)
        assert uffd.zeropage(area.addr, PAGE_SIZE) == PAGE_SIZE
        assert area.read(0, PAGE_SIZE) == bytes(PAGE_SIZE)
        assert uffd.wait(0.1) == []
        with pytest.raises(RangeExistsError):
            uffd.zeropage(area.addr, PAGE_SIZE)


def test_copy_mode_wp_leaves_page_protected(uffd, need_wp, faulter):
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        src.write(0, PATTERN)
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING | RegisterMode.WP)
        uffd.copy(area.addr, src.addr, PAGE_SIZE, wp=True)
        assert pagemap.read(area.addr)[0].uffd_wp
        assert area.read(0, 8) == PATTERN[:8]
        f = faulter(lambda: memory.touch(area.addr, 1, write=True, value=0xAB))
        msgs = uffd.wait(5)
        assert msgs and msgs[0].flags & PageFaultFlag.WP and msgs[0].flags & PageFaultFlag.WRITE
        uffd.writeprotect(area.addr, PAGE_SIZE, protect=False)
        assert f.done(5)
        assert area.read(0, 1) == b"\xab"


def test_writeprotect_traps_writes_not_reads(uffd, need_wp, faulter):
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    with memory.mmap_anonymous(PAGE_SIZE) as area:
        area.write(0, b"before")
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.WP)
        uffd.writeprotect(area.addr, PAGE_SIZE, protect=True)
        assert pagemap.read(area.addr)[0].uffd_wp
        assert area.read(0, 6) == b"before"  # a CPU read does not trap
        assert uffd.wait(0.2) == []
        f = faulter(lambda: area.write(0, b"after!"))
        msgs = uffd.wait(5)
        assert len(msgs) == 1
        assert msgs[0].flags == PageFaultFlag.WP | PageFaultFlag.WRITE
        assert not f.done(0.3), "the writer must block while the page is protected"
        assert area.read(0, 6) == b"before"  # the write is invisible while protected
        uffd.writeprotect(area.addr, PAGE_SIZE, protect=False)
        assert f.done(5) and f.error is None
        assert area.read(0, 6) == b"after!"
        assert not pagemap.read(area.addr)[0].uffd_wp


def test_writeprotect_dontwake_then_wake(uffd, need_wp, faulter):
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    with memory.mmap_anonymous(PAGE_SIZE) as area:
        area.write(0, b"x")
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.WP)
        uffd.writeprotect(area.addr, PAGE_SIZE, protect=True)
        f = faulter(lambda: area.write(0, b"y"))
        assert uffd.wait(5)
        uffd.writeprotect(area.addr, PAGE_SIZE, protect=False, dontwake=True)
        assert not f.done(0.3), "DONTWAKE must leave the writer asleep"
        uffd.wake(area.addr, PAGE_SIZE)
        assert f.done(5) and area.read(0, 1) == b"y"


def test_dontneed_gives_a_fresh_missing_fault(uffd, faulter):
    uffd.api(Feature.EVENT_REMOVE)
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        src.write(0, PATTERN)
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        uffd.copy(area.addr, src.addr, PAGE_SIZE)
        f = faulter(lambda: memory.madvise(area.addr, PAGE_SIZE, "MADV_DONTNEED"))
        msgs = uffd.wait(5)
        assert msgs == [Remove(area.addr, area.addr + PAGE_SIZE)]
        assert f.done(5) and f.error is None
        assert not pagemap.read(area.addr)[0].present
        g = faulter(lambda: area.read(0, 4))
        msgs = uffd.wait(5)
        assert len(msgs) == 1 and isinstance(msgs[0], PageFault) and not msgs[0].is_wp
        uffd.zeropage(area.addr, PAGE_SIZE)
        assert g.done(5) and g.result == bytes(4)


def test_thread_id_in_pagefault(uffd, faulter):
    uffd.api(Feature.THREAD_ID)
    tids = []
    with memory.mmap_anonymous(PAGE_SIZE) as area:
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)

        def access():
            tids.append(memory.gettid())
            return area.read(0, 1)

        f = faulter(access)
        msgs = uffd.wait(5)
        uffd.zeropage(area.addr, PAGE_SIZE)
        assert f.done(5)
        assert msgs[0].ptid == tids[0] != os.getpid()


def test_fork_event_gives_a_working_child_uffd(uffd):
    uffd.api(Feature.EVENT_FORK)
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        src.write(0, PATTERN)
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        forked = fork_with_uffd(uffd)
        if forked.pid == 0:
            ok = area.read(0, 4) == PATTERN[:4]  # faults in the child's mm
            os._exit(0 if ok else 3)
        try:
            with forked.child_uffd as child_uffd:
                msgs = child_uffd.wait(5)
                assert len(msgs) == 1 and isinstance(msgs[0], PageFault)
                child_uffd.copy(area.addr, src.addr, PAGE_SIZE)
                assert uffd.wait(0.1) == [], "the child's fault must not reach the parent's uffd"
        finally:
            status = reap(forked.pid, 5)
        assert status == 0


def test_pagemap_uffd_wp_bit_set_and_cleared(uffd, need_wp):
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    with memory.mmap_anonymous(2 * PAGE_SIZE) as area:
        memory.touch(area.addr, area.length, write=True, value=1)
        uffd.register(area.addr, area.length, RegisterMode.WP)
        before = pagemap.read(area.addr, 2)
        assert all(e.present and not e.uffd_wp for e in before)
        assert all(e.exclusive for e in before)
        uffd.writeprotect(area.addr, PAGE_SIZE, protect=True)
        after = pagemap.read(area.addr, 2)
        assert after[0].uffd_wp and not after[1].uffd_wp
        uffd.writeprotect(area.addr, PAGE_SIZE, protect=False)
        assert not pagemap.read(area.addr)[0].uffd_wp


def test_writeprotect_on_unregistered_range_fails(uffd, need_wp):
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    with memory.mmap_anonymous(PAGE_SIZE) as area:
        memory.touch(area.addr, PAGE_SIZE, write=True)
        with pytest.raises(UffdError) as exc:
            uffd.writeprotect(area.addr, PAGE_SIZE, protect=True)
    assert exc.value.errno == errno.ENOENT and exc.value.call == "UFFDIO_WRITEPROTECT"


def test_unregister_wakes_blocked_faulter(uffd, faulter):
    uffd.api()
    with memory.mmap_anonymous(PAGE_SIZE) as area:
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        f = faulter(lambda: area.read(0, 1))
        assert uffd.wait(5)
        uffd.unregister(area.addr, PAGE_SIZE)
        assert f.done(5) and f.result == b"\0"


def test_dev_userfaultfd_and_user_mode_only(host_features):
    if host_features.dev_userfaultfd != "accessible":
        pytest.skip(f"/dev/userfaultfd is {host_features.dev_userfaultfd}")
    with Userfaultfd.open(via="dev", user_mode_only=True) as uffd:
        assert uffd.api().ioctls & Ioctl.REGISTER


def test_move_and_poison_report_unsupported_or_work(uffd):
    """MOVE/POISON either work (headers and kernel grant them) or raise an errno that says why."""
    uffd.api()
    with memory.mmap_anonymous(PAGE_SIZE) as area:
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        with pytest.raises(UffdError) as exc:
            uffd.poison(area.addr + 1, PAGE_SIZE)
        assert exc.value.errno in (errno.ENOTSUP, errno.EINVAL)


def test_vmsplice_and_process_vm_readv_copy_real_bytes():
    with memory.mmap_anonymous(PAGE_SIZE) as page, memory.mmap_anonymous(PAGE_SIZE) as dst:
        page.write(0, PATTERN)
        r, w = os.pipe()
        try:
            assert memory.vmsplice(w, page.addr, PAGE_SIZE) == PAGE_SIZE
            assert os.read(r, PAGE_SIZE) == PATTERN
        finally:
            os.close(r), os.close(w)
        assert memory.process_vm_readv(os.getpid(), dst.addr, page.addr, PAGE_SIZE) == PAGE_SIZE
        assert dst.read(0, PAGE_SIZE) == PATTERN


def test_mremap_fixed_moves_the_pages_and_says_errno():
    """The pages and their bytes move onto the target range; a bad request is an OSError with its errno."""
    src = memory.mmap_anonymous(2 * PAGE_SIZE)  # never closed: after the move its range is no longer ours
    src.write(0, PATTERN)
    src.write(PAGE_SIZE, PATTERN[::-1])
    with memory.mmap_anonymous(2 * PAGE_SIZE) as dst:
        memory.mremap_fixed(src.addr, 2 * PAGE_SIZE, dst.addr)
        assert dst.read(0, PAGE_SIZE) == PATTERN and dst.read(PAGE_SIZE, PAGE_SIZE) == PATTERN[::-1]
        assert pagemap.read(dst.addr, 2)[0].present
        with pytest.raises(OSError) as exc:  # the old range is unmapped now
            memory.mremap_fixed(src.addr, 2 * PAGE_SIZE, dst.addr)
        assert exc.value.errno == errno.EFAULT, exc.value
        with pytest.raises(OSError) as exc:  # MREMAP_FIXED needs a page-aligned target
            memory.mremap_fixed(dst.addr, PAGE_SIZE, dst.addr + PAGE_SIZE + 1)
        assert exc.value.errno == errno.EINVAL and "mremap" in str(exc.value), exc.value
        assert dst.read(0, PAGE_SIZE) == PATTERN  # a refused move left the pages where they were


def test_move_page_answers_per_page_and_refuses_an_offline_node():
    """move_pages(2) of one page: a page already on the node answers that node, a page never touched
    -ENOENT (its status, not an error), a node that is not online fails the call (ENODEV). Without
    CAP_SYS_NICE, MPOL_MF_MOVE_ALL is refused whole (EPERM)."""
    try:
        online = Path("/sys/devices/system/node/online").read_text().strip()
    except OSError:
        pytest.skip("no NUMA support in this kernel: move_pages(2) is ENOSYS")
    first = int(online.split(",")[0].split("-")[0])
    beyond = int(online.split(",")[-1].split("-")[-1]) + 1
    with memory.mmap_anonymous(2 * PAGE_SIZE) as m:
        m.write(0, PATTERN)
        if os.geteuid() != 0:
            with pytest.raises(OSError) as exc:
                memory.move_page(m.addr, first)
            assert exc.value.errno == errno.EPERM, exc.value
            return
        assert memory.move_page(m.addr, first) == first  # node 0 on a one-node host: already there
        assert memory.move_page(m.page(1), first) == -errno.ENOENT  # no page behind it yet
        with pytest.raises(OSError) as exc:
            memory.move_page(m.addr, beyond)
        assert exc.value.errno == errno.ENODEV and "move_pages" in str(exc.value), exc.value
        assert m.read(0, PAGE_SIZE) == PATTERN


def test_take_duplicates_a_uffd_that_serves_the_same_faults(uffd):
    """pidfd_getfd(2) of this process's own uffd: the duplicate fills the original's registered range; a
    descriptor the process cannot have is EBADF."""
    uffd.api()
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        src.write(0, PATTERN)
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        with Userfaultfd.take(os.getpid(), uffd.fileno()) as dup:
            assert dup.fileno() != uffd.fileno()
            assert dup.copy(area.addr, src.addr, PAGE_SIZE) == PAGE_SIZE
            assert area.read(0, PAGE_SIZE) == PATTERN
        with pytest.raises(OSError) as exc:
            Userfaultfd.take(os.getpid(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # past the last fd
        assert exc.value.errno == errno.EBADF and "pidfd_getfd" in str(exc.value), exc.value


def test_odirect_roundtrip(tmp_path):
    path = str(tmp_path / "direct.bin")
    open(path, "wb").close()
    try:
        fd = memory.open_direct(path)
    except UffdError as exc:
        pytest.skip(f"{tmp_path} does not take O_DIRECT: {exc}")
    try:
        with memory.mmap_anonymous(PAGE_SIZE) as page, memory.mmap_anonymous(PAGE_SIZE) as back:
            page.write(0, PATTERN)
            assert memory.pwrite_from(fd, page.addr, PAGE_SIZE, 0) == PAGE_SIZE
            assert memory.pread_into(fd, back.addr, PAGE_SIZE, 0) == PAGE_SIZE
            assert back.read(0, PAGE_SIZE) == PATTERN
    finally:
        os.close(fd)


def test_fork_event_is_read_even_while_python_threads_hold_the_gil(uffd):
    """fork() holds the GIL until its FORK message is read; the reader must not need the GIL.
    A Python thread busy holding the GIL made a Python-thread reader lose this race on CI."""
    import threading

    uffd.api(Feature.EVENT_FORK)
    stop = threading.Event()

    def hog():
        while not stop.is_set():
            sum(range(1000))

    hogs = [threading.Thread(target=hog, daemon=True) for _ in range(2)]
    for h in hogs:
        h.start()
    try:
        with memory.mmap_anonymous(PAGE_SIZE) as area:
            uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
            for _ in range(30):
                forked = fork_with_uffd(uffd)
                if forked.pid == 0:
                    os._exit(0)
                forked.child_uffd.close()
                assert reap(forked.pid, 5) == 0
    finally:
        stop.set()
        for h in hogs:
            h.join(5)


# The uAPI added after 6.1 (MOVE, POISON, WP_ASYNC, WP_UNPOPULATED, WP on shmem, MINOR): the bindings name
# it even when built against an older linux/userfaultfd.h (native/uffd_uapi_fallback.h), and each feature
# does on the running kernel what the uAPI says, or the test is skipped with the probed reason.


def _need(kf, feature: Feature) -> None:
    if not kf.has(feature):
        pytest.skip(
            f"kernel {kf.kernel['release']} does not offer UFFD_FEATURE_{feature.name} (offers {kf.feature_bits:#x})"
        )


def test_modern_features_are_named_not_numbered(kf):
    """Every bit the running kernel offers has a name: no 'unnamed' bit in `uffdprobe features`."""
    assert not [n for n in kf.features + kf.api_ioctls if n.startswith("bit ")]
    for ioctls in kf.anon_ioctls.values():
        assert not [n for n in ioctls if n.startswith("bit ")]


def test_move_serves_a_missing_fault_with_the_source_page(uffd, kf, faulter):
    _need(kf, Feature.MOVE)
    info = uffd.api(Feature.MOVE)
    assert info.ioctls & Ioctl.REGISTER
    with memory.mmap_anonymous(2 * PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as src:
        src.write(0, PATTERN)
        allowed = uffd.register(area.addr, area.length, RegisterMode.MISSING)
        assert allowed & Ioctl.MOVE
        f = faulter(lambda: area.read(PAGE_SIZE, 8))
        msgs = uffd.wait(5)
        assert len(msgs) == 1 and msgs[0].address & ~(PAGE_SIZE - 1) == area.page(1)
        assert uffd.move(area.page(1), src.addr, PAGE_SIZE) == PAGE_SIZE
        assert f.done(5) and f.error is None and f.result == PATTERN[:8]
        assert not pagemap.read(src.addr)[0].present, "MOVE takes the page away from the source"
        with pytest.raises(UffdError) as exc:  # the source is now a hole
            uffd.move(area.page(0), src.addr, PAGE_SIZE)
        assert exc.value.errno == errno.ENOENT
        assert uffd.move(area.page(0), src.addr, PAGE_SIZE, allow_src_holes=True) == PAGE_SIZE


def test_poison_makes_the_page_an_error_without_a_fault_message(uffd, kf):
    _need(kf, Feature.POISON)
    uffd.api(Feature.POISON)
    with memory.mmap_anonymous(PAGE_SIZE) as area, memory.mmap_anonymous(PAGE_SIZE) as buf:
        allowed = uffd.register(area.addr, PAGE_SIZE, RegisterMode.MISSING)
        assert allowed & Ioctl.POISON
        assert uffd.poison(area.addr, PAGE_SIZE) == PAGE_SIZE
        pid = os.fork()
        if pid == 0:  # the child inherits the marker; touching it is a memory error, not a uffd fault
            faulthandler.disable()  # pytest's handler would print the expected SIGBUS as a crash
            memory.touch(area.addr, 1)
            os._exit(0)
        assert reap(pid) == -signal.SIGBUS
        assert uffd.read() == []
        buf.write(0, PATTERN)  # a marker is not a page: UFFDIO_COPY may still fill the entry
        assert uffd.copy(area.addr, buf.addr, PAGE_SIZE) == PAGE_SIZE
        assert area.read(0, 16) == PATTERN[:16]


def test_wp_async_resolves_write_faults_in_the_kernel(uffd, kf):
    _need(kf, Feature.WP_ASYNC)
    uffd.api(Feature.PAGEFAULT_FLAG_WP | Feature.WP_ASYNC)
    with memory.mmap_anonymous(2 * PAGE_SIZE) as area:
        memory.touch(area.addr, area.length, write=True, value=1)
        uffd.register(area.addr, area.length, RegisterMode.WP)
        uffd.writeprotect(area.addr, area.length, True)
        assert all(e.uffd_wp for e in pagemap.read(area.addr, 2))
        area.write(PAGE_SIZE, b"\x07")  # same thread: with synchronous WP this would never return
        entries = pagemap.read(area.addr, 2)
        assert entries[0].uffd_wp and not entries[1].uffd_wp, "the write cleared WP on its page only"
        assert area.read(PAGE_SIZE, 1) == b"\x07" and uffd.read() == []


def test_wp_unpopulated_protects_pages_never_touched(uffd, kf, faulter):
    _need(kf, Feature.WP_UNPOPULATED)
    uffd.api(Feature.PAGEFAULT_FLAG_WP | Feature.WP_UNPOPULATED)
    with memory.mmap_anonymous(PAGE_SIZE) as area:
        uffd.register(area.addr, PAGE_SIZE, RegisterMode.WP)
        uffd.writeprotect(area.addr, PAGE_SIZE, True)
        entry = pagemap.read(area.addr)[0]
        assert not entry.present and entry.uffd_wp, "a marker, not a page, carries the protection"
        f = faulter(lambda: area.write(0, b"\x09"))
        msgs = uffd.wait(5)
        assert len(msgs) == 1 and msgs[0].is_wp and msgs[0].is_write
        assert not f.done(0.2), "the write into the never-touched page waits for the handler"
        uffd.writeprotect(area.addr, PAGE_SIZE, False)
        assert f.done(5) and f.error is None and area.read(0, 1) == b"\x09"


def test_wp_on_shmem_traps_writes_to_a_memfd(uffd, kf, faulter):
    _need(kf, Feature.WP_HUGETLBFS_SHMEM)
    uffd.api(Feature.PAGEFAULT_FLAG_WP | Feature.WP_HUGETLBFS_SHMEM)
    fd = memory.memfd_create("uffdprobe-wp-shmem")
    try:
        os.ftruncate(fd, PAGE_SIZE)
        with memory.mmap_fd(fd, PAGE_SIZE) as area:
            area.write(0, b"\x01")
            uffd.register(area.addr, PAGE_SIZE, RegisterMode.WP)
            uffd.writeprotect(area.addr, PAGE_SIZE, True)
            f = faulter(lambda: area.write(0, b"\x02"))
            msgs = uffd.wait(5)
            assert len(msgs) == 1 and msgs[0].is_wp
            assert os.pread(fd, 1, 0) == b"\x01", "the shared page is unchanged while the write waits"
            uffd.writeprotect(area.addr, PAGE_SIZE, False)
            assert f.done(5) and f.error is None
        assert os.pread(fd, 1, 0) == b"\x02"
    finally:
        os.close(fd)


def _minor_fault_then_continue(uffd, fd: int, length: int, faulter, *, wp: bool = False):
    """Page cache filled through one mapping; a second, fresh one reads it: a MINOR fault that CONTINUE
    resolves."""
    with memory.mmap_fd(fd, length) as fill:
        fill.write(0, PATTERN)
    with memory.mmap_fd(fd, length) as area:
        mode = RegisterMode.MINOR | (RegisterMode.WP if wp else RegisterMode(0))
        allowed = uffd.register(area.addr, length, mode)
        assert allowed & Ioctl.CONTINUE
        f = faulter(lambda: area.read(5, 4))
        msgs = uffd.wait(5)
        assert len(msgs) == 1 and msgs[0].flags & PageFaultFlag.MINOR and not msgs[0].is_write
        assert uffd.continue_(area.addr, length, wp=wp) == length
        assert f.done(5) and f.error is None and f.result == PATTERN[5:9]
        if wp:  # UFFDIO_CONTINUE_MODE_WP installed the page write-protected
            assert pagemap.read(area.addr)[0].uffd_wp
            w = faulter(lambda: area.write(0, b"\x00"))
            assert uffd.wait(5)[0].is_wp
            uffd.writeprotect(area.addr, length, False)
            assert w.done(5) and w.error is None


@pytest.mark.parametrize("wp", [False, True], ids=["continue", "continue-wp"])
def test_minor_shmem_fault_resolved_by_continue(uffd, kf, faulter, wp):
    _need(kf, Feature.MINOR_SHMEM)
    wanted = Feature.MINOR_SHMEM
    if wp:
        _need(kf, Feature.WP_HUGETLBFS_SHMEM)
        wanted |= Feature.PAGEFAULT_FLAG_WP | Feature.WP_HUGETLBFS_SHMEM
    uffd.api(wanted)
    fd = memory.memfd_create("uffdprobe-minor-shmem")
    try:
        os.ftruncate(fd, PAGE_SIZE)
        _minor_fault_then_continue(uffd, fd, PAGE_SIZE, faulter, wp=wp)
    finally:
        os.close(fd)


@pytest.fixture
def free_huge_page():
    """One free 2 MiB huge page: as root the pool is grown by one for the test and put back after; otherwise
    (or when the kernel cannot find the memory) SKIP with the reason."""
    pool = Path("/proc/sys/vm/nr_hugepages")

    def free() -> int:
        with open("/proc/meminfo") as f:
            meminfo = dict(line.split(":", 1) for line in f)
        if meminfo.get("Hugepagesize", "").split()[:1] != ["2048"]:
            return 0
        return int(meminfo.get("HugePages_Free", "0").split()[0])

    before = int(pool.read_text())
    grown = False
    if free() < 1 and os.geteuid() == 0:
        pool.write_text(f"{before + 1}\n")
        grown = True
    try:
        if free() < 1:
            pytest.skip(f"no free 2 MiB huge page (vm.nr_hugepages={pool.read_text().strip()}, none free)")
        yield
    finally:
        if grown:
            pool.write_text(f"{before}\n")


def test_minor_hugetlbfs_fault_resolved_by_continue(uffd, kf, faulter, free_huge_page):
    _need(kf, Feature.MINOR_HUGETLBFS)
    huge = 2 << 20
    fd = memory.memfd_create(
        "uffdprobe-minor-huge", constants["memfd"]["MFD_CLOEXEC"] | constants["memfd"]["MFD_HUGETLB"]
    )
    try:
        os.ftruncate(fd, huge)
        uffd.api(Feature.MINOR_HUGETLBFS)
        _minor_fault_then_continue(uffd, fd, huge, faulter)
    finally:
        os.close(fd)


def test_mincore_tells_resident_pages_from_untouched_ones():
    """mincore(2): a written page is resident, a never-touched one of the same mapping is not."""
    m = memory.mmap_anonymous(4 * memory.PAGE_SIZE)
    try:
        m.write(memory.PAGE_SIZE, b"resident")
        assert memory.mincore(m.addr, m.length) == [False, True, False, False]
    finally:
        m.close()
