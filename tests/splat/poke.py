"""Test-only scenarios (tests/test_splat.py, with --scenarios-from): they poke the prctl that the test
recipe splat-on-request.toml adds, which WARNs or BUG()s on request. Their own verdict is PASS on every
kernel; whatever else the cell says comes from the kernel log the supervisor reads around them.

splat-warn  prctl(UFFDPROBE_PR_SPLAT, "WARN"): on splat-on-request a WARNING, the call returns 0; on any
            other kernel EINVAL (an option number no prctl uses).
splat-oops  prctl(UFFDPROBE_PR_SPLAT, "BUG"): on splat-on-request an Oops that kills this child before it
            reports; elsewhere EINVAL.
"""
import ctypes
import os

from uffdprobe.scenarios.api import Outcome, Scenario, ScenarioContext, Verdict

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
    return Outcome(Verdict.PASS, f"prctl {word} refused: {os.strerror(err)} (no splat hook here)",
                   {"prctl": ret, "errno": err})


def run_warn(ctx: ScenarioContext) -> Outcome:
    return _poke(ctx, SPLAT_WARN, "WARN")


def run_oops(ctx: ScenarioContext) -> Outcome:
    return _poke(ctx, SPLAT_BUG, "BUG")


SCENARIOS = [
    Scenario("splat-warn", "Test only: does a WARNING the kernel logs while a scenario runs become its verdict?",
             run_warn, needs=(), memory=("anon-4k",), test_only=True),
    Scenario("splat-oops", "Test only: does an Oops that kills the scenario's child become its verdict?",
             run_oops, needs=(), memory=("anon-4k",), test_only=True),
]
