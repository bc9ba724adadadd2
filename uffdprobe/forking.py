"""fork() with a userfaultfd that stays usable: with EVENT_FORK the parent receives the child's uffd."""
import errno
import os
import threading
from dataclasses import dataclass
from typing import Optional

from .errors import UffdError
from .messages import Fork
from .uffd import Userfaultfd


@dataclass
class Forked:
    """In the parent: the child's pid and (with EVENT_FORK) the uffd for the child's mm."""
    pid: int
    child_uffd: Optional[Userfaultfd]


def fork_with_uffd(uffd: Userfaultfd, timeout: float = 5.0) -> Forked:
    """fork(); with EVENT_FORK enabled, fork() blocks until the event is read, so a thread reads it.

    Returns Forked(0, None) in the child.  Without EVENT_FORK the child's ranges are not registered
    and the parent's uffd still serves only the parent's mm.
    """
    from .flags import Feature
    info = uffd.api_info
    if info is None or not info.enabled & Feature.EVENT_FORK:
        pid = os.fork()
        return Forked(pid, None)
    got: list = []

    def reader() -> None:
        for msg in uffd.wait(timeout):
            got.append(msg)

    thread = threading.Thread(target=reader, name="uffd-fork-reader", daemon=True)
    thread.start()
    pid = os.fork()
    if pid == 0:
        return Forked(0, None)
    thread.join(timeout + 1)
    forks = [m for m in got if isinstance(m, Fork)]
    if not forks:
        raise UffdError(errno.ETIMEDOUT, "fork(EVENT_FORK)", hint=f"no FORK event within {timeout}s; got {got!r}")
    return Forked(pid, Userfaultfd(forks[0].ufd))
