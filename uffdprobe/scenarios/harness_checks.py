# SPDX-License-Identifier: GPL-2.0-only
"""Harness self-tests: scenarios that misbehave on purpose, on every kernel, to prove the supervisor."""

import errno
import os
import subprocess
import time

from uffdprobe.verdicts import Outcome, Verdict
from .context import ScenarioContext, watched
from .memkinds import SkipScenario


def run_kernel_spin(ctx: ScenarioContext) -> Outcome:
    """The watched call keeps its task running in the kernel (1 GiB /dev/zero -> /dev/null sendfiles)
    far longer than the spin limit, with no uffd involved: the supervisor must call it HANG and kill it.
    Where /dev/zero cannot splice (before 6.2) 64 MiB reads of it keep the task in the kernel instead."""
    src = os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)
    dst = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
    buf = None
    try:
        with watched(ctx, "1 GiB sendfiles from /dev/zero, over and over"):
            end = time.monotonic() + float(ctx.params.get("spin_for_s", 120.0))
            while time.monotonic() < end:
                if buf is None:
                    try:
                        os.sendfile(dst, src, None, 1 << 30)
                        continue
                    except OSError as exc:  # before 6.2 /dev/zero cannot splice: EINVAL
                        if exc.errno != errno.EINVAL:
                            raise
                        buf = bytearray(64 << 20)
                os.readv(src, [buf])  # 64 MiB cleared by the kernel a call
    finally:
        os.close(src)
        os.close(dst)
    return Outcome(Verdict.PASS, "the spin ended by itself before the supervisor judged it")


def run_close_channel(ctx: ScenarioContext) -> Outcome:
    """Inside a VM, detach the results channel mount (a transport dying under the guest): the verdicts
    after this one cannot reach the host, which must keep those before it and say the channel was lost."""
    results = os.environ.get("UFFDPROBE_RESULTS", "")
    channel = os.path.dirname(results.rstrip("/"))
    if not results or not os.path.ismount(channel):
        raise SkipScenario("no results channel mount here: this self-test only runs inside a uffdprobe VM")
    subprocess.run(["umount", "-l", channel], check=True, timeout=30, capture_output=True)
    return Outcome(Verdict.PASS, f"detached the results channel {channel}")
