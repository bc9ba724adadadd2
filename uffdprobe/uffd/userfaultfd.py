# SPDX-License-Identifier: GPL-2.0-only
"""A userfaultfd: creation (syscall or /dev/userfaultfd), UFFDIO_API, the range ioctls, messages."""

import errno
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import messages
from ._ffi import ffi, lib
from .errors import NotSupportedError, error_for
from .flags import (
    CONTINUE_MODE,
    COPY_MODE,
    MOVE_MODE,
    OPEN_FLAGS,
    POISON_MODE,
    UFFD_API,
    WRITEPROTECT_MODE,
    ZEROPAGE_MODE,
    Feature,
    Ioctl,
    RegisterMode,
)

_PERMISSION_HINT = "run as root, or grant access to /dev/userfaultfd, or set vm.unprivileged_userfaultfd=1"


def _open_hint(err: int, call: str) -> str:
    """What a failed userfaultfd creation means for the user."""
    if err in (errno.EPERM, errno.EACCES):
        return _PERMISSION_HINT
    if err == errno.ENOSYS and call == "userfaultfd":
        return (
            "ENOSYS, no userfaultfd syscall"
            + ("" if os.path.exists("/dev/userfaultfd") else " and no /dev/userfaultfd")
            + ": kernel built without CONFIG_USERFAULTFD, or a seccomp "
            "filter hides the syscall"
        )
    return ""


@dataclass(frozen=True)
class ApiInfo:
    """UFFDIO_API's answer: what the kernel offers and what this fd enabled."""

    available: Feature
    enabled: Feature
    ioctls: Ioctl


def _mode(table: Dict[str, int], name: str, wanted: bool) -> int:
    if not wanted:
        return 0
    if name not in table:
        raise NotSupportedError(errno.ENOTSUP, name, hint="absent from the build headers")
    return table[name]


class Userfaultfd:
    """One userfaultfd file descriptor; closes on exit from a `with` block."""

    def __init__(self, fd: int):
        self.fd = fd
        self.api_info: Optional[ApiInfo] = None
        self._msgs = ffi.new("struct up_msg[64]")

    @classmethod
    def open(
        cls, *, nonblock: bool = True, cloexec: bool = True, user_mode_only: bool = False, via: str = "auto"
    ) -> "Userfaultfd":
        """Create a userfaultfd via the syscall, /dev/userfaultfd, or ("auto") the first that works."""
        flags = (
            (OPEN_FLAGS["O_CLOEXEC"] if cloexec else 0)
            | (OPEN_FLAGS["O_NONBLOCK"] if nonblock else 0)
            | (OPEN_FLAGS["UFFD_USER_MODE_ONLY"] if user_mode_only else 0)
        )
        order = {"auto": ("syscall", "dev"), "syscall": ("syscall",), "dev": ("dev",)}[via]
        err, call = 0, ""
        for how in order:
            fd = lib.up_userfaultfd(flags) if how == "syscall" else lib.up_dev_userfaultfd(flags)
            if fd >= 0:
                return cls(fd)
            if how == "dev" and ffi.errno == errno.ENOENT and call:
                break  # no /dev/userfaultfd at all: the syscall's errno is the one that says why
            err, call = ffi.errno, "userfaultfd" if how == "syscall" else "USERFAULTFD_IOC_NEW"
        raise error_for(err, call, hint=_open_hint(err, call))

    @classmethod
    def take(cls, pid: int, fd: int) -> "Userfaultfd":
        """A duplicate, in this process, of process `pid`'s userfaultfd `fd` (pidfd_getfd(2), Linux 5.6+, with
        ptrace access to `pid`); OSError when the process is gone or the kernel refuses it."""
        pidfd = os.pidfd_open(pid)
        try:
            dup = lib.up_pidfd_getfd(pidfd, fd)
            if dup < 0:
                err = ffi.errno
                raise error_for(
                    err, f"pidfd_getfd({pid}, {fd})", hint="Linux 5.6+ is needed" if err == errno.ENOSYS else ""
                )
        finally:
            os.close(pidfd)
        return cls(dup)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Userfaultfd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def api(self, features: Feature = Feature(0)) -> ApiInfo:
        """UFFDIO_API handshake asking for `features`; EINVAL means one of them is not offered."""
        feats = ffi.new("uint64_t *", int(features))
        ioctls = ffi.new("uint64_t *")
        if lib.up_api(self.fd, UFFD_API, feats, ioctls) < 0:
            raise error_for(ffi.errno, "UFFDIO_API", hint=f"features asked: {int(features):#x}")
        self.api_info = ApiInfo(Feature(feats[0]), Feature(int(features)), Ioctl(ioctls[0]))
        return self.api_info

    def register(self, start: int, length: int, mode: RegisterMode) -> Ioctl:
        """UFFDIO_REGISTER; returns the ioctls the kernel allows on this range."""
        ioctls = ffi.new("uint64_t *")
        if lib.up_register(self.fd, start, length, int(mode), ioctls) < 0:
            raise error_for(ffi.errno, "UFFDIO_REGISTER", start, length, hint=f"mode {mode!r}")
        return Ioctl(ioctls[0])

    def unregister(self, start: int, length: int) -> None:
        if lib.up_unregister(self.fd, start, length) < 0:
            raise error_for(ffi.errno, "UFFDIO_UNREGISTER", start, length)

    def wake(self, start: int, length: int) -> None:
        if lib.up_wake(self.fd, start, length) < 0:
            raise error_for(ffi.errno, "UFFDIO_WAKE", start, length)

    def copy(self, dst: int, src: int, length: int, *, wp: bool = False, dontwake: bool = False) -> int:
        """UFFDIO_COPY; returns bytes copied, a partial copy raises with `.done` set."""
        mode = _mode(COPY_MODE, "UFFDIO_COPY_MODE_WP", wp) | _mode(COPY_MODE, "UFFDIO_COPY_MODE_DONTWAKE", dontwake)
        done = ffi.new("int64_t *")
        if lib.up_copy(self.fd, dst, src, length, mode, done) < 0:
            raise error_for(ffi.errno, "UFFDIO_COPY", dst, length, done=max(done[0], 0))
        return int(done[0])

    def zeropage(self, start: int, length: int, *, dontwake: bool = False) -> int:
        mode = _mode(ZEROPAGE_MODE, "UFFDIO_ZEROPAGE_MODE_DONTWAKE", dontwake)
        done = ffi.new("int64_t *")
        if lib.up_zeropage(self.fd, start, length, mode, done) < 0:
            raise error_for(ffi.errno, "UFFDIO_ZEROPAGE", start, length, done=max(done[0], 0))
        return int(done[0])

    def writeprotect(self, start: int, length: int, protect: bool, *, dontwake: bool = False) -> None:
        """UFFDIO_WRITEPROTECT: set (protect=True) or clear it; clearing wakes unless dontwake."""
        mode = _mode(WRITEPROTECT_MODE, "UFFDIO_WRITEPROTECT_MODE_WP", protect) | _mode(
            WRITEPROTECT_MODE, "UFFDIO_WRITEPROTECT_MODE_DONTWAKE", dontwake
        )
        if lib.up_writeprotect(self.fd, start, length, mode) < 0:
            raise error_for(ffi.errno, "UFFDIO_WRITEPROTECT", start, length, hint="protect" if protect else "unprotect")

    def continue_(self, start: int, length: int, *, wp: bool = False, dontwake: bool = False) -> int:
        """UFFDIO_CONTINUE: map the page cache page behind a MINOR fault."""
        mode = _mode(CONTINUE_MODE, "UFFDIO_CONTINUE_MODE_WP", wp) | _mode(
            CONTINUE_MODE, "UFFDIO_CONTINUE_MODE_DONTWAKE", dontwake
        )
        done = ffi.new("int64_t *")
        if lib.up_continue(self.fd, start, length, mode, done) < 0:
            raise error_for(ffi.errno, "UFFDIO_CONTINUE", start, length, done=max(done[0], 0))
        return int(done[0])

    def move(self, dst: int, src: int, length: int, *, dontwake: bool = False, allow_src_holes: bool = False) -> int:
        """UFFDIO_MOVE (6.8+) where the headers and the kernel grant it."""
        mode = _mode(MOVE_MODE, "UFFDIO_MOVE_MODE_DONTWAKE", dontwake) | _mode(
            MOVE_MODE, "UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES", allow_src_holes
        )
        done = ffi.new("int64_t *")
        if lib.up_move(self.fd, dst, src, length, mode, done) < 0:
            raise error_for(
                ffi.errno,
                "UFFDIO_MOVE",
                dst,
                length,
                done=max(done[0], 0),
                hint="" if MOVE_MODE else "absent from the build headers",
            )
        return int(done[0])

    def poison(self, start: int, length: int, *, dontwake: bool = False) -> int:
        """UFFDIO_POISON (6.6+) where the headers and the kernel grant it."""
        mode = _mode(POISON_MODE, "UFFDIO_POISON_MODE_DONTWAKE", dontwake)
        done = ffi.new("int64_t *")
        if lib.up_poison(self.fd, start, length, mode, done) < 0:
            raise error_for(
                ffi.errno,
                "UFFDIO_POISON",
                start,
                length,
                done=max(done[0], 0),
                hint="" if POISON_MODE else "absent from the build headers",
            )
        return int(done[0])

    def poll(self, timeout: float) -> bool:
        """True when a message is ready within `timeout` seconds (negative: wait forever)."""
        ret = lib.up_poll_in(self.fd, -1 if timeout < 0 else int(timeout * 1000))
        if ret < 0:
            raise error_for(ffi.errno, "poll(userfaultfd)")
        return bool(ret > 0)

    def read(self, max_msgs: int = 64) -> List[messages.Message]:
        """Read up to `max_msgs` messages; [] when none is pending on a non-blocking fd."""
        n = lib.up_read_msgs(self.fd, self._msgs, max_msgs)
        if n < 0:
            if ffi.errno == errno.EAGAIN:
                return []
            raise error_for(ffi.errno, "read(userfaultfd)")
        return [messages.decode(self._msgs[i]) for i in range(n)]

    def wait(self, timeout: float, max_msgs: int = 64) -> List[messages.Message]:
        """Messages that arrive within `timeout` seconds, [] if none does (poll and read in one C call)."""
        n = lib.up_wait_msgs(self.fd, self._msgs, max_msgs, -1 if timeout < 0 else int(timeout * 1000))
        if n < 0:
            raise error_for(ffi.errno, "read(userfaultfd)")
        return [messages.decode(self._msgs[i]) for i in range(n)]
