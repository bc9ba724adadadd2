# SPDX-License-Identifier: GPL-2.0-only
"""swapoff() with the swap entry of a uffd-write-protected page (fixed by 099dd6878b9b).

Before v5.13 swapoff compared swap PTEs with the uffd-wp bit still set, never found that page's PTE and
retried forever. Asked only of the swap disk uffdprobe gave its own guest (osutil.swap): it is switched
off and, whatever happened, on again before the scenario ends; any other swap is never touched.
"""

import os
import shutil
import subprocess
import time
from typing import List

from uffdprobe.osutil import swap
from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from .common import PATTERN, page_flags
from .context import ScenarioContext, watched
from .memkinds import SkipScenario, page_out


#: How long swapoff may run before the scenario stops waiting (the supervisor calls a spinning swapoff HANG
#: well before this and rescues it by un-protecting the page).
SWAPOFF_BOUND_S = 90.0
#: A swapoff of the one page this long was spinning (the supervisor's spin bound is 20 s).
SLOW_S = 15.0
_SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"


def own_swap_device() -> str:
    """The guest's own swap disk, active; SkipScenario anywhere else (the host's swap is never switched off)."""
    serial = os.environ.get(swap.SERIAL_ENV)
    if not serial:
        raise SkipScenario(
            "swapoff is asked only of the swap disk uffdprobe attaches to its own guest "
            f"(${swap.SERIAL_ENV} unset: not a uffdprobe guest)"
        )
    device = swap.device_with_serial(serial)
    if device is None or not swap.active(device):
        raise SkipScenario(f"the guest's swap disk (serial {serial}) is not active swap")
    _tool("swapon")
    return device


def _tool(name: str) -> str:
    """The path of a util-linux tool; SkipScenario without it."""
    found = shutil.which(name) or shutil.which(name, path=_SBIN)
    if not found:
        raise SkipScenario(f"no {name} found (apt-get install util-linux)")
    return found


def _stack_frames(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/stack") as f:
            return [line.split()[-1] for line in f.read().splitlines() if line.strip()]
    except OSError:
        return []


def _swapoff(ctx: ScenarioContext, device: str) -> dict:
    """Run swapoff DEVICE as a watched child; sample its kernel stack while it runs. Bounded."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [_tool("swapoff"), device], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    frames: List[str] = []
    with watched(ctx, f"swapoff {device}", pid=proc.pid):
        try:
            while proc.poll() is None and time.monotonic() - started < SWAPOFF_BOUND_S:
                frames += [f for f in _stack_frames(proc.pid) if f not in frames]
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()  # try_to_unuse() checks signals: swapoff fails with EINTR
            output = proc.communicate(timeout=30)[0].decode(errors="replace").strip()
    return {
        "exit": proc.returncode,
        "output": output,
        "seconds": round(time.monotonic() - started, 2),
        "stack_frames_seen": frames,
    }


def run(ctx: ScenarioContext) -> Outcome:
    device = own_swap_device()
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    m = memory.mmap_anonymous(PAGE_SIZE)
    m.write(0, PATTERN)
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)
    page_out(m)
    ctx.note("pagemap_swapped_out", page_flags(pagemap.read(m.addr)[0]) | {"swapped": pagemap.read(m.addr)[0].swapped})
    ctx.hand_over(uffd, m.addr, m.length, rescue="unprotect")
    try:
        ran = _swapoff(ctx, device)
    finally:
        said = swap.enable_guest_swap()
        ctx.note("swap_after", said)
    after = pagemap.read(m.addr)[0]
    evidence = {"swapoff": ran, "pagemap_after_swapoff": page_flags(after)}
    if ran["exit"] != 0:
        return Outcome(Verdict.ERROR, f"swapoff {device} exit {ran['exit']}: {ran['output']}", evidence)
    if m.read(0, len(PATTERN)) != PATTERN:
        return Outcome(Verdict.ERROR, "the page swapped back in does not hold its data", evidence)
    if not after.uffd_wp and ran["seconds"] >= SLOW_S:
        return Outcome(
            Verdict.HANG,
            f"swapoff finished only after {ran['seconds']} s, once the page's protection "
            "was removed (the supervisor's rescue): it could not take a uffd-wp swap entry",
            evidence,
        )
    if not after.uffd_wp:
        return Outcome(Verdict.WP_LOST, "swapoff swapped the protected page in without its uffd-wp bit", evidence)
    return Outcome(
        Verdict.PASS,
        f"swapoff {device} took the write-protected page's swap entry in {ran['seconds']} s and kept its uffd-wp bit",
        evidence,
    )
