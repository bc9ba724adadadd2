# SPDX-License-Identifier: GPL-2.0-only
"""A user's scenario source is imported first in a forked child, bounded: a module that calls os._exit
or sys.exit, hangs, or crashes the interpreter at import ends that child, not uffdprobe, and becomes
one clear error (exit 2). Only a module whose trial import finished (or raised an exception, which the
real import then reports as it always has) is imported into uffdprobe itself."""

import os
import select
import signal
import time
from typing import Callable

from uffdprobe.exitcodes import UsageError

#: Seconds a user module may take to import (a slow one imports numpy; under TCG everything is slower).
IMPORT_BOUND_S = 30.0
_FINISHED, _RAISED = b"finished\n", b"raised\n"


def check(label: str, load: Callable[[], object], bound: float = IMPORT_BOUND_S) -> None:
    """Run load() in a forked child and return once it finished or raised; a UsageError naming `label`
    when the child ended in any other way or did not finish within `bound` seconds (it is killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into uffdprobe
        os.close(read_end)
        word = _RAISED
        try:
            load()
            word = _FINISHED
        except BaseException:  # noqa: B036 - the real import reports it; here only how the import ended counts
            pass
        os.write(write_end, word)
        os._exit(0)
    os.close(write_end)
    try:
        said, status = _wait(pid, read_end, bound)
    finally:
        os.close(read_end)
    if said in (_FINISHED, _RAISED):
        return
    if status is None:
        raise UsageError(
            f"{label}: importing it did not finish within {bound:g} s (it was stopped); a scenario "
            "file must only define SCENARIOS at import, not wait or run"
        )
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.Signals._value2member_map_ else str(-status)
        raise UsageError(f"{label}: importing it crashed the interpreter ({name}); fix the module")
    raise UsageError(
        f"{label}: importing it ended the process (exit status {status}: os._exit or exit at "
        "import); a scenario file must only define SCENARIOS at import"
    )


def _wait(pid: int, read_end: int, bound: float):
    """(what the child wrote, its exit status or None when it had to be killed), the child reaped."""
    deadline = time.monotonic() + bound
    said = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return said, None
        ready, _, _ = select.select([read_end], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(read_end, 64)
            said += chunk
            if not chunk or said.endswith(b"\n"):  # its word said, or its end closed: it is ending
                break
    _, status = os.waitpid(pid, 0)
    return said, os.waitstatus_to_exitcode(status)
