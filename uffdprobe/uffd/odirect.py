# SPDX-License-Identifier: GPL-2.0-only
"""Find where an O_DIRECT write can go: a scratch block device, or a directory whose filesystem takes it."""

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from typing import Iterator, Iterable, Optional

from . import memory
from .blockdev import why_not_scratch
from .errors import UffdError

#: Set by the VM runner to the guest's scratch virtio-blk disk.
SCRATCH_ENV = "UFFDPROBE_SCRATCH_DEV"


class NotScratch(Exception):
    """A block device that holds data or is in use: never written. One line naming what was found."""


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def open_block_device(path: str) -> int:
    """An O_DIRECT, O_EXCL descriptor of a scratch block device: the kernel refuses it while mounted or held."""
    return memory.open_direct(path, os.O_RDWR | os.O_EXCL)


def checked(path: str, what: str) -> str:
    """`path` as a target: a block device only when free scratch (else NotScratch); a regular file's
    directory, where the scenario makes a fresh file of its own (the file itself is never written)."""
    if is_block_device(path):
        reason = why_not_scratch(path)
        if reason:
            raise NotScratch(
                f"{what} {path}: {reason}; refusing to write to it: give a blank block device "
                "nothing uses (wipefs -a DEVICE if it is truly scratch) or a directory"
            )
        return path
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path))
    return path


def accepts_odirect(path: str) -> bool:
    """True when a page-aligned O_DIRECT write to `path` (a block device or a directory) succeeds."""
    try:
        if stat.S_ISBLK(os.stat(path).st_mode):
            fd = open_block_device(path)
            target_cleanup = None
        else:
            handle, name = tempfile.mkstemp(prefix=".uffdprobe-probe-", dir=path)
            os.close(handle)
            target_cleanup = name
            fd = memory.open_direct(name)
    except (OSError, UffdError):
        return False
    try:
        with memory.mmap_anonymous(memory.PAGE_SIZE) as page:
            memory.pwrite_from(fd, page.addr, memory.PAGE_SIZE, 0)
        return True
    except UffdError:
        return False
    finally:
        os.close(fd)
        if target_cleanup:
            os.unlink(target_cleanup)


def find_target(explicit: Optional[str] = None, candidates: Iterable[str] = ("/var/tmp", "/tmp", ".")) -> Optional[str]:
    """The explicit target if given (it must work), else the scratch disk, else the first candidate directory.
    NotScratch for a block device that holds data or is in use, before anything is written to it."""
    if explicit:
        explicit = checked(explicit, "--odirect-target")
        return explicit if accepts_odirect(explicit) else None
    scratch = os.environ.get(SCRATCH_ENV)
    if scratch:
        scratch = checked(scratch, SCRATCH_ENV)
    if scratch and accepts_odirect(scratch):
        return scratch
    for path in candidates:
        if os.path.isdir(path) and os.access(path, os.W_OK) and accepts_odirect(path):
            return os.path.abspath(path)
    return None


@contextlib.contextmanager
def loop_device(size: int = 4 << 20) -> Iterator[Optional[str]]:
    """A loop device over a sparse file (block-device O_DIRECT works whatever the file's filesystem);
    None without root or losetup. Detached and removed on exit."""
    losetup = shutil.which("losetup") or "/sbin/losetup"
    if os.geteuid() != 0 or not os.path.exists(losetup):
        yield None
        return
    handle, backing = tempfile.mkstemp(prefix="uffdprobe-loop-")
    device = None
    try:
        os.ftruncate(handle, size)
        os.close(handle)
        proc = subprocess.run([losetup, "--find", "--show", backing], capture_output=True, text=True, timeout=30)
        device = proc.stdout.strip() if proc.returncode == 0 else None
        yield device if device and accepts_odirect(device) else None
    finally:
        if device:
            subprocess.run([losetup, "--detach", device], capture_output=True, timeout=30)
        os.unlink(backing)


@contextlib.contextmanager
def target(explicit: Optional[str] = None) -> Iterator[Optional[str]]:
    """find_target(), falling back to a temporary loop device when no directory takes O_DIRECT."""
    found = find_target(explicit)
    if found or explicit:
        yield found
        return
    with loop_device() as device:
        yield device
