# SPDX-License-Identifier: GPL-2.0-only
"""The control: a CPU write to a write-protected page traps with WP|WRITE, a CPU read does not."""

from typing import Any, Dict

from uffdprobe.uffd import pagemap
from uffdprobe.uffd.flags import PageFaultFlag, names
from uffdprobe.uffd.messages import PageFault, as_data
from uffdprobe.verdicts import Outcome, Verdict
from .common import PATTERN, Bounded, page_flags, wp_page
from .context import ScenarioContext, watched

SECRET_WRITE = b"written-by-cpu"


def trap_real_write(ctx: ScenarioContext, uffd, m, wait_s: float = 2.0) -> Outcome:
    """Write from a helper thread; PASS if it traps with WP|WRITE and lands once unprotected."""
    writer = Bounded(lambda: m.write(0, SECRET_WRITE), "cpu-writer")
    msgs = uffd.wait(wait_s)
    trapped = [x for x in msgs if isinstance(x, PageFault) and x.address // 4096 == m.addr // 4096]
    evidence: Dict[str, Any] = {"messages": [as_data(x) for x in msgs]}
    if not trapped:
        writer.done(5.0)
        evidence["pagemap_after"] = page_flags(pagemap.read(m.addr)[0])
        return Outcome(Verdict.WP_LOST, "a CPU write to the write-protected page was not trapped", evidence)
    flags = trapped[0].flags
    invisible = m.read(0, len(SECRET_WRITE)) != SECRET_WRITE
    uffd.writeprotect(m.addr, m.length, protect=False)
    landed = writer.done(5.0) and m.read(0, len(SECRET_WRITE)) == SECRET_WRITE
    evidence.update(flags=names(flags), invisible_while_protected=invisible, landed_after_unprotect=landed)
    if flags & (PageFaultFlag.WP | PageFaultFlag.WRITE) != PageFaultFlag.WP | PageFaultFlag.WRITE:
        return Outcome(Verdict.ERROR, f"write fault carried flags {flags!r}, not WP|WRITE", evidence)
    if not invisible:
        return Outcome(Verdict.WP_LOST, "the write became visible while the page was protected", evidence)
    if not landed:
        return Outcome(Verdict.ERROR, "the write did not complete after un-protecting", evidence)
    return Outcome(Verdict.PASS, "CPU write trapped with WP|WRITE, stayed invisible, landed on un-protect", evidence)


def run(ctx: ScenarioContext) -> Outcome:
    uffd, m = wp_page(ctx)
    with watched(ctx, "CPU read of the write-protected page"):
        data = m.read(0, len(PATTERN))
    spurious = uffd.wait(0.2)
    if data != PATTERN or spurious:
        return Outcome(
            Verdict.ERROR,
            "a CPU read of the protected page trapped or read wrong bytes",
            {"messages": [repr(x) for x in spurious]},
        )
    if ctx.params.get("selftest_unprotect_first"):
        # Self-test knob: really drop the protection, so the real write below must go through untrapped.
        uffd.writeprotect(m.addr, m.length, protect=False)
    return trap_real_write(ctx, uffd, m)


def run_self_deadlock(ctx: ScenarioContext) -> Outcome:
    """The only thread that could answer the fault writes to its own protected page."""
    uffd, m = wp_page(ctx)
    if ctx.params.get("run") in ctx.params.get("selftest_helper_write_runs", ()):
        # Test-only knob (proves flaky detection): in these runs a helper thread writes while this
        # thread stays the reader, so the real fault is answered and the run ends PASS, not HANG.
        return trap_real_write(ctx, uffd, m)
    with watched(ctx, "CPU write by the only uffd reader"):
        m.write(0, SECRET_WRITE)
    return Outcome(Verdict.PASS, "the write completed: nobody trapped it (or it was rescued)")
