# SPDX-License-Identifier: GPL-2.0-only
"""One exclusive flock on a file, waited for within a bound, the file naming who holds it."""

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional


class Busy(Exception):
    """Another process held the lock for the whole wait; `holder` says who."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


#: What a waiter calls a holder that left no note (yet).
UNNAMED = "another process"
#: How long a waiter gives a new holder to write its note before saying UNNAMED.
NOTE_WAIT_S = 1.0


@contextlib.contextmanager
def held(
    path: Path, wait: float, on_wait: Optional[Callable[[str], None]] = None, poll: float = 0.2, shared: bool = False
) -> Iterator[None]:
    """Hold an exclusive (or, with `shared`, a shared) flock on `path` (made if need be) for the with-block.

    Waits at most `wait` seconds, telling on_wait(holder) once if it must wait, then raises Busy. While an
    exclusive lock is held the file names this process for whoever waits; a full disk only loses that
    note, never the lock. Shared holders leave no note (there may be many)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:  # closing releases the flock, also when the wait is interrupted
        started = time.monotonic()
        deadline, told = started + wait, False
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = holder_of(fd)
                if time.monotonic() >= deadline:
                    raise Busy(holder) from None
                # an exclusive holder writes its note just after taking the lock: wait a moment for it
                # before calling the holder anonymous (shared holders never leave one)
                named = holder != UNNAMED or time.monotonic() - started >= NOTE_WAIT_S
                if on_wait and not told and named:
                    on_wait(holder)
                    told = True
                time.sleep(poll)
        if shared:
            yield
            return
        _note(fd, f"pid {os.getpid()} ({' '.join(sys.argv)[:200]}) since {time.ctime()}")
        try:
            yield
        finally:
            _note(fd, "")
    finally:
        os.close(fd)


def holder_of(fd: int) -> str:
    """The note the holder left in the lock file."""
    return os.pread(fd, 512, 0).decode(errors="replace").strip() or UNNAMED


def _note(fd: int, text: str) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:
        pass
