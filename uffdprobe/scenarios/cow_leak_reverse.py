# SPDX-License-Identifier: GPL-2.0-only
"""The other direction of CVE-2020-29374: the parent's pipe holds a page the child later writes.

The parent vmsplice()s a page into its own pipe before fork(), then unmaps it; the child is left
as the page's only mapper and writes to it. A kernel that reuses the page for that write by its
map count (every 2020 kernel, 17839856fd58's forced COW included: the GUP happened before the
page was shared) lets the parent read the child's data from the pipe. The kernel's cow selftest
calls this case "vmsplice() before fork(), unmap in parent after fork()".
"""

import os

from uffdprobe.uffd import memory
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.verdicts import Outcome, Verdict
from .common import read_exactly, reap
from .context import ScenarioContext
from .memkinds import allocate

BORING = b"BORING DATA ".ljust(64, b".")
CHILD = b"THE CHILD WROTE THIS".ljust(64, b"!")


def run(ctx: ScenarioContext) -> Outcome:
    # Self-test knob: a MAP_SHARED page really is shared with the child, so its data must cross.
    m = allocate(ctx.memory, BORING, shared=bool(ctx.params.get("selftest_shared_page")))
    spliced_r, spliced_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    try:
        memory.vmsplice(spliced_w, m.addr, PAGE_SIZE)  # read-GUP before the page is shared
        pid = os.fork()
        if pid == 0:
            _child(m, to_child_r, to_parent_w)
        os.close(to_child_r), os.close(to_parent_w)
        try:
            m.close()  # unmap in the parent after fork()
            os.write(to_child_w, b"W")
            done = read_exactly(to_parent_r, 1, 10.0)
            seen = read_exactly(spliced_r, len(BORING), 5.0)
        finally:
            os.close(to_child_w), os.close(to_parent_r)
            status = reap(pid)
    finally:
        os.close(spliced_r), os.close(spliced_w)
        m.close()
    evidence = {"parent_read": seen[:32].decode(errors="replace"), "child_exit": status}
    if done != b"D":
        return Outcome(Verdict.ERROR, "the child did not write the page in time", evidence)
    if seen.startswith(CHILD[:20]):
        return Outcome(Verdict.LEAK, "the parent read the child's post-fork write through its pipe", evidence)
    if seen == BORING:
        return Outcome(Verdict.PASS, "the parent's pipe kept the pre-fork data; the child wrote a copy", evidence)
    return Outcome(Verdict.ERROR, f"the parent read {len(seen)} unexpected bytes from its pipe", evidence)


def _child(m, cmd_r: int, reply_w: int) -> None:
    """Wait until the parent has unmapped the page, write to it, say so."""
    code = 0
    try:
        if read_exactly(cmd_r, 1, 10.0) == b"W":
            m.write(0, CHILD)
            os.write(reply_w, b"D")
    except BaseException:
        code = 3
    finally:
        os._exit(code)
