# SPDX-License-Identifier: GPL-2.0-only
"""OSError subclasses for userfaultfd and memory calls: errno, the failing call and its range."""

import errno as _errno
import os
from typing import Optional


class UffdError(OSError):
    """A failed userfaultfd or memory call; `call`, `start`, `length` and `done` say which and how far."""

    def __init__(
        self,
        err: int,
        call: str,
        start: Optional[int] = None,
        length: Optional[int] = None,
        done: Optional[int] = None,
        hint: str = "",
    ):
        where = f" on [{start:#x}, +{length:#x})" if start is not None and length is not None else ""
        partial = f" after {done} bytes" if done else ""
        text = f"{call}{where}: {os.strerror(err)}{partial}" + (f" ({hint})" if hint else "")
        super().__init__(err, text)
        self.call, self.start, self.length, self.done = call, start, length, done

    def __str__(self) -> str:
        return f"[Errno {self.errno}] {self.strerror}"


class RangeExistsError(UffdError):
    """EEXIST: the page is already mapped (a second COPY or ZEROPAGE, or a racing fill)."""


class RetryError(UffdError):
    """EAGAIN: the mapping changed under a non-cooperative event or a copy was partial; retry."""


class MappingGoneError(UffdError):
    """ENOENT: the target range is no longer registered or mapped (non-cooperative unmap)."""


class ProcessGoneError(UffdError):
    """ESRCH: the process owning the userfaultfd's mm has exited."""


class NotSupportedError(UffdError):
    """The build headers or the running kernel do not offer this call (ENOTSUP, ENOSYS, ENOTTY)."""


class UffdPermissionError(UffdError):
    """EPERM/EACCES creating a userfaultfd: neither root, nor /dev/userfaultfd access, nor the sysctl."""


_BY_ERRNO = {
    _errno.EEXIST: RangeExistsError,
    _errno.EAGAIN: RetryError,
    _errno.ENOENT: MappingGoneError,
    _errno.ESRCH: ProcessGoneError,
    _errno.ENOTSUP: NotSupportedError,
    _errno.ENOSYS: NotSupportedError,
    _errno.ENOTTY: NotSupportedError,  # an ioctl the kernel does not know (PAGEMAP_SCAN before 6.7)
    _errno.EPERM: UffdPermissionError,
    _errno.EACCES: UffdPermissionError,
}


def error_for(
    err: int,
    call: str,
    start: Optional[int] = None,
    length: Optional[int] = None,
    done: Optional[int] = None,
    hint: str = "",
) -> UffdError:
    """The UffdError subclass that carries this errno's documented meaning."""
    return _BY_ERRNO.get(err, UffdError)(err, call, start, length, done, hint)
