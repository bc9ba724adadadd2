# SPDX-License-Identifier: GPL-2.0-only
"""CVE-2020-29374: a child's vmsplice() reference to a COW-shared page sees the parent's later write."""

import os

from uffdprobe.uffd import memory
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.verdicts import Outcome, Verdict
from .common import read_exactly, reap
from .context import ScenarioContext
from .memkinds import allocate

BORING = b"BORING DATA ".ljust(64, b".")
SECRET = b"THIS IS SECRET".ljust(64, b"!")


def run(ctx: ScenarioContext) -> Outcome:
    # Self-test knob: a MAP_SHARED page really is shared with the child, so its data must cross.
    m = allocate(ctx.memory, BORING, shared=bool(ctx.params.get("selftest_shared_page")))
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(m, to_child_r, to_parent_w)
    os.close(to_child_r), os.close(to_parent_w)
    try:
        if read_exactly(to_parent_r, 1, 10.0) != b"S":
            return Outcome(Verdict.ERROR, "the child did not vmsplice the page in time")
        m.write(0, SECRET)  # the parent's write after the child unmapped
        os.write(to_child_w, b"W")
        seen = read_exactly(to_parent_r, len(BORING), 10.0)
    finally:
        os.close(to_child_w), os.close(to_parent_r)
        status = reap(pid)
    evidence = {"child_read": seen[:32].decode(errors="replace"), "child_exit": status}
    if seen.startswith(SECRET[:14]):
        return Outcome(Verdict.LEAK, "the child read the parent's post-fork write through its pipe", evidence)
    if seen == BORING:
        return Outcome(Verdict.PASS, "the child's pipe kept the pre-write data; the parent wrote a copy", evidence)
    return Outcome(Verdict.ERROR, f"the child read {len(seen)} unexpected bytes", evidence)


def _child(m, cmd_r: int, reply_w: int) -> None:
    """vmsplice the shared page, unmap it, let the parent write, then read the pipe."""
    code = 0
    try:
        r, w = os.pipe()
        memory.vmsplice(w, m.addr, PAGE_SIZE)
        memory.munmap(m.addr, m.length)
        os.write(reply_w, b"S")
        if read_exactly(cmd_r, 1, 10.0) == b"W":
            os.write(reply_w, read_exactly(r, len(BORING), 5.0))
    except BaseException:
        code = 3
    finally:
        os._exit(code)
