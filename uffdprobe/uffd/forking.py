# SPDX-License-Identifier: GPL-2.0-only
"""fork() with a userfaultfd that stays usable: with EVENT_FORK the parent receives the child's uffd."""

import errno
import os
from dataclasses import dataclass
from typing import Optional

from . import messages
from ._ffi import ffi, lib
from .errors import UffdError, error_for
from .flags import Feature
from .userfaultfd import Userfaultfd


@dataclass
class Forked:
    """In the parent: the child's pid and (with EVENT_FORK) the uffd for the child's mm."""

    pid: int
    child_uffd: Optional[Userfaultfd]


def fork_with_uffd(uffd: Userfaultfd, timeout: float = 5.0) -> Forked:
    """fork(); with EVENT_FORK enabled, fork() blocks until its FORK message is read, while holding
    the GIL, so a C thread that never needs the GIL reads it.

    Returns Forked(0, None) in the child.  Without EVENT_FORK the child's ranges are not registered
    and the parent's uffd still serves only the parent's mm.
    """
    info = uffd.api_info
    if info is None or not info.enabled & Feature.EVENT_FORK:
        return Forked(os.fork(), None)
    reader = lib.up_reader_start(uffd.fd, int(timeout * 1000))
    if reader == ffi.NULL:
        raise error_for(ffi.errno, "pthread_create(uffd fork reader)")
    try:
        pid = os.fork()
    except OSError:
        lib.up_reader_join(reader, ffi.new("struct up_msg[8]"), 8)
        raise
    if pid == 0:
        return Forked(0, None)
    out = ffi.new("struct up_msg[8]")
    n = lib.up_reader_join(reader, out, 8)
    if n < 0:
        raise error_for(ffi.errno, "read(userfaultfd) for the FORK event")
    got = [messages.decode(out[i]) for i in range(n)]
    forks = [m for m in got if isinstance(m, messages.Fork)]
    if not forks:
        raise UffdError(errno.ETIMEDOUT, "fork(EVENT_FORK)", hint=f"no FORK event within {timeout}s; got {got!r}")
    return Forked(pid, Userfaultfd(forks[0].ufd))
