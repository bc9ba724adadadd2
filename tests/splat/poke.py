"""Test-only scenarios (tests/test_splat.py, with --scenarios-from): they poke the prctl that the test
recipe splat-on-request.toml adds, which WARNs or BUG()s on request. Their own verdict is PASS on every
kernel; whatever else the cell says comes from the kernel log the supervisor reads around them.

splat-warn  prctl(UFFDPROBE_PR_SPLAT, "WARN"): on splat-on-request a WARNING, the call returns 0; on any
            other kernel EINVAL (an option number no prctl uses).
splat-oops  prctl(UFFDPROBE_PR_SPLAT, "BUG"): on splat-on-request an Oops that kills this child before it
            reports; elsewhere EINVAL.
splat-hang  the WARN poke, then a real HANG on every kernel: the only uffd reader writes to its own
            write-protected page (rescued by the supervisor). A HANG is already a kernel problem: it
            stays HANG, with the splat as evidence.
"""

import ctypes
import os

from uffdprobe.scenarios.api import (
    PAGE_SIZE,
    Feature,
    Outcome,
    RegisterMode,
    Scenario,
    ScenarioContext,
    Userfaultfd,
    Verdict,
    memory,
    watched,
)

UFFDPROBE_PR_SPLAT = 0x75667370
SPLAT_WARN = 0x5741524E
SPLAT_BUG = 0x00425547


def _poke(ctx: ScenarioContext, what: int, word: str) -> Outcome:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    ctx.note("poked", f"prctl({UFFDPROBE_PR_SPLAT:#x}, {word}) from pid {os.getpid()}")
    ret = prctl(UFFDPROBE_PR_SPLAT, what, 0, 0, 0)
    err = ctypes.get_errno()
    if ret == 0:
        return Outcome(Verdict.PASS, f"prctl {word} returned 0 (this kernel has the splat hook)", {"prctl": 0})
    return Outcome(
        Verdict.PASS, f"prctl {word} refused: {os.strerror(err)} (no splat hook here)", {"prctl": ret, "errno": err}
    )


def run_warn(ctx: ScenarioContext) -> Outcome:
    return _poke(ctx, SPLAT_WARN, "WARN")


def run_oops(ctx: ScenarioContext) -> Outcome:
    return _poke(ctx, SPLAT_BUG, "BUG")


def run_hang(ctx: ScenarioContext) -> Outcome:
    poked = _poke(ctx, SPLAT_WARN, "WARN")
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    region = memory.mmap_anonymous(PAGE_SIZE)
    region.write(0, b"before")
    uffd.register(region.addr, PAGE_SIZE, RegisterMode.WP)
    uffd.writeprotect(region.addr, PAGE_SIZE, protect=True)
    ctx.hand_over(uffd, region.addr, PAGE_SIZE, rescue="unprotect")
    with watched(ctx, "a write by the only uffd reader to its own protected page"):
        region.write(0, b"written")
    return Outcome(Verdict.PASS, f"{poked.reason}; the write completed: nobody trapped it (or it was rescued)")


SCENARIOS = [
    Scenario(
        "splat-warn",
        "Test only: does a WARNING the kernel logs while a scenario runs become its verdict?",
        run_warn,
        needs=(),
        memory=("anon-4k",),
        test_only=True,
    ),
    Scenario(
        "splat-oops",
        "Test only: does an Oops that kills the scenario's child become its verdict?",
        run_oops,
        needs=(),
        memory=("anon-4k",),
        test_only=True,
    ),
    Scenario(
        "splat-hang",
        "Test only: does a HANG with a WARNING while it ran stay HANG, with the splat?",
        run_hang,
        needs=("uffd", "uffd-wp"),
        memory=("anon-4k",),
        test_only=True,
    ),
]
