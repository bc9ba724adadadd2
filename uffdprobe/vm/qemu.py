# SPDX-License-Identifier: GPL-2.0-only
"""Build a QEMU command line, run it, and watch the console with an overall and a silence limit."""

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from uffdprobe.osutil import children
from . import console
from .errors import VmSetupError

QEMU = "qemu-system-x86_64"
POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 30.0  # progress says "still running" this often while the guest works
EXIT_GRACE_SECONDS = 15.0  # after "command done" or a panic, QEMU should exit by itself within this


@dataclass
class QemuSpec:
    """What to boot and how: image, initrd, kernel command line, devices, limits."""

    kernel: Path
    initrd: Optional[Path]
    append: str
    accel: str
    memory_mb: int
    cpus: int
    console_log: Path
    stderr_log: Path
    device_args: list = field(default_factory=list)


@dataclass
class QemuRun:
    """What happened: exit code, which limit (if any) ended it, and when markers appeared."""

    returncode: Optional[int]
    limit_hit: str = ""  # "", "overall", "silence"
    launched_at: float = 0.0
    marker_times: dict = field(default_factory=dict)
    ended_at: float = 0.0
    stopped: bool = False  # uffdprobe stopped QEMU (a limit, or no exit after the guest was done)


def qemu_binary() -> str:
    """Path of qemu-system-x86_64, or a VmSetupError saying how to install it."""
    path = shutil.which(QEMU)
    if not path:
        raise VmSetupError(f"{QEMU} not found: apt-get install qemu-system-x86")
    return path


def command_line(spec: QemuSpec) -> list:
    """The full QEMU argv for a spec."""
    if spec.accel == "kvm":
        accel, cpu = ["-accel", "kvm"], "host"
    else:
        accel, cpu = ["-accel", "tcg,thread=multi"], "max"
    argv = [
        qemu_binary(),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-machine",
        "pc",
        *accel,
        "-cpu",
        cpu,
        "-smp",
        str(spec.cpus),
        "-m",
        str(spec.memory_mb),
        "-kernel",
        str(spec.kernel),
        "-append",
        spec.append,
        "-chardev",
        f"file,id=con,path={spec.console_log}",
        "-serial",
        "chardev:con",
        "-nic",
        "none",
    ]
    if spec.initrd:
        argv += ["-initrd", str(spec.initrd)]
    return argv + list(spec.device_args)


def run(spec: QemuSpec, *, timeout: float, silence_timeout: float, progress=None) -> QemuRun:
    """Run QEMU until it exits or a limit hits; QEMU is killed and reaped on every path."""
    argv = command_line(spec)
    spec.console_log.touch()
    result = QemuRun(returncode=None)
    proc = None
    try:
        with children.signals_blocked(), open(spec.stderr_log, "wb") as err:
            result.launched_at = time.monotonic()
            proc = children.spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
        _watch(proc, spec.console_log, result, timeout, silence_timeout, progress)
    finally:
        children.stop(proc)
        result.ended_at = time.monotonic()
        if proc is not None and result.returncode is None:
            result.returncode, result.stopped = proc.returncode, True
    return result


def _watch(proc, log_path, result, timeout, silence_timeout, progress):
    seen = ""
    last_output = result.launched_at
    finish_by = None  # set once the guest said it is done or panicked
    next_beat = result.launched_at + HEARTBEAT_SECONDS
    with open(log_path, "rb") as log:
        while True:
            code = proc.poll()
            chunk = log.read().decode("utf-8", "replace")
            now = time.monotonic()
            if chunk:
                last_output = now
                tail = seen + chunk
                seen = tail[-400:]
                for marker in (console.INIT_REACHED, console.COMMAND_DONE, console.PANIC_LINE):
                    if marker not in result.marker_times and marker in tail:
                        result.marker_times[marker] = now
                        if progress:
                            progress(marker, now - result.launched_at)
                if finish_by is None and (console.COMMAND_DONE in tail or console.PANIC_LINE in tail):
                    finish_by = now + EXIT_GRACE_SECONDS
            if code is not None:
                result.returncode = code
                return
            if progress and now > next_beat:
                progress("", now - result.launched_at)
                next_beat = now + HEARTBEAT_SECONDS
            if finish_by is not None:
                if now > finish_by:
                    return
            elif now - result.launched_at > timeout:
                result.limit_hit = "overall"
                return
            elif now - last_output > silence_timeout:
                result.limit_hit = "silence"
                return
            time.sleep(POLL_SECONDS)
