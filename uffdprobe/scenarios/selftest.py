"""Harness self-tests: scenarios that misbehave on purpose, on every kernel, to prove the supervisor."""
import os
import time

from ..verdicts import Outcome, Verdict
from .context import ScenarioContext


def run_kernel_spin(ctx: ScenarioContext) -> Outcome:
    """The watched call keeps its task running in the kernel (1 GiB /dev/zero -> /dev/null sendfiles)
    far longer than the spin limit, with no uffd involved: the supervisor must call it HANG and kill it."""
    src = os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)
    dst = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
    try:
        ctx.watch("1 GiB sendfiles from /dev/zero, over and over")
        end = time.monotonic() + float(ctx.params.get("spin_for_s", 120.0))
        while time.monotonic() < end:
            os.sendfile(dst, src, None, 1 << 30)
        ctx.unwatch()
    finally:
        os.close(src), os.close(dst)
    return Outcome(Verdict.PASS, "the spin ended by itself before the supervisor judged it")
