# SPDX-License-Identifier: GPL-2.0-only
"""Swap in a guest: the blank virtio-blk disk the VM runner attached for it (found by its serial) made swap
and switched on, so pages can be paged out (the anon-swap memory kind, the selftests' swapped-out cases).

Only ever called in a guest uffdprobe booted (the host sets UFFDPROBE_SWAP_SERIAL for it); the running
kernel's own swap is never touched.
"""

import glob
import os
import shutil
import subprocess
from typing import Optional

#: Set by the host for the guest's `uffdprobe run`: the serial of the disk to make swap.
SERIAL_ENV = "UFFDPROBE_SWAP_SERIAL"
TOOL_TIMEOUT = 60


def device_with_serial(serial: str) -> Optional[str]:
    """/dev/NAME of the block device whose /sys/block/NAME/serial is `serial`, or None."""
    for path in sorted(glob.glob("/sys/block/*/serial")):
        try:
            with open(path) as f:
                found = f.read().strip()
        except OSError:
            continue
        if found == serial:
            return "/dev/" + path.split("/")[3]
    return None


def active(device: str) -> bool:
    """Whether `device` is already in /proc/swaps."""
    try:
        with open("/proc/swaps") as f:
            return any(line.split()[0] == device for line in f.read().splitlines()[1:] if line.strip())
    except OSError:
        return False


def enable_guest_swap(serial: Optional[str] = None) -> str:
    """mkswap + swapon the disk named by $UFFDPROBE_SWAP_SERIAL (or `serial`); one line saying what happened
    (an empty string when no swap disk was asked for). Failures are said, never raised: the anon-swap
    kind then SKIPs with the probed reason."""
    serial = serial or os.environ.get(SERIAL_ENV)
    if not serial:
        return ""
    device = device_with_serial(serial)
    if device is None:
        return f"guest swap: no disk with serial {serial} (/sys/block/*/serial); anon-swap will skip"
    if active(device):
        return f"guest swap: {device} already on"
    for argv in (["mkswap", device], ["swapon", device]):
        tool = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin:/bin")
        if tool is None:
            return f"guest swap: no {argv[0]} found (apt-get install util-linux); anon-swap will skip"
        try:
            proc = subprocess.run(
                [tool] + argv[1:], capture_output=True, text=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"guest swap: {argv[0]} {device} failed ({exc}); anon-swap will skip"
        if proc.returncode != 0:
            said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            return f"guest swap: {argv[0]} {device} exit {proc.returncode}: {said[-1] if said else ''}"
    return f"guest swap: {device} (serial {serial}) is swap now"
