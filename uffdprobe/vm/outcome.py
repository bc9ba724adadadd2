# SPDX-License-Identifier: GPL-2.0-only
"""Classify one boot as exactly one of OK, PANIC, BOOT_FAIL, VM_TIMEOUT, VM_KILLED or CHANNEL_LOST,
with the evidence."""

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from uffdprobe.exitcodes import Exit
from . import console
from .qemu import QemuRun

OK, PANIC, BOOT_FAIL, VM_TIMEOUT = "OK", "PANIC", "BOOT_FAIL", "VM_TIMEOUT"
VM_KILLED = "VM_KILLED"  # QEMU ended by a signal nobody in uffdprobe sent (OOM killer, a user, a crash)
CHANNEL_LOST = "CHANNEL_LOST"  # the guest finished, but its results channel had stopped taking files
#: The exit status of a boot that did not end OK (the guest command's own status is used when it did).
OUTCOME_EXIT = {
    PANIC: Exit.PANIC,
    BOOT_FAIL: Exit.BOOT_FAIL,
    VM_TIMEOUT: Exit.VM_TIMEOUT,
    VM_KILLED: Exit.VM_KILLED,
    CHANNEL_LOST: Exit.CHANNEL_LOST,
}
_DONE_STATUS = re.compile(re.escape(console.COMMAND_DONE) + r" status=(\d+)")


@dataclass
class Verdict:
    """The outcome, why, and what the guest reported."""

    outcome: str
    reason: str
    exit_status: Optional[int] = None
    panic_lines: list = field(default_factory=list)
    kernel_report: list = field(default_factory=list)  #: after a PANIC: console.row_report


def read_exit_status(channel_dir: Path) -> Optional[int]:
    """The exit status the guest init wrote, or None."""
    try:
        return int((Path(channel_dir) / "exit_status").read_text().strip())
    except (OSError, ValueError):
        return None


def classify(text: str, qemu_stderr: str, run: QemuRun, channel_dir: Path, limits: dict) -> Verdict:
    """Decide the outcome from the console text, QEMU's stderr, how QEMU ended and the channel files."""
    status = read_exit_status(channel_dir)
    reached = console.INIT_REACHED in text
    if console.has_panic(text):
        lines = console.panic_lines(text)
        if not reached:
            return Verdict(BOOT_FAIL, "kernel panicked before the guest init ran", status, lines)
        return Verdict(PANIC, console.panic_reason(text), status, lines, console.row_report(text))
    if run.returncode is not None and run.returncode < 0 and not run.stopped:
        name = signal.Signals(-run.returncode).name if -run.returncode in signal.valid_signals() else "?"
        return Verdict(
            VM_KILLED,
            f"QEMU died of signal {-run.returncode} ({name}) that uffdprobe did not send, "
            f"{run.ended_at - run.launched_at:.1f}s after launch: killed from outside "
            "(OOM killer, a user) or crashed",
            status,
        )
    if run.limit_hit == "overall":
        return Verdict(VM_TIMEOUT, f"overall limit of {limits['timeout']}s hit", status)
    if run.limit_hit == "silence":
        return Verdict(VM_TIMEOUT, f"no console output for {limits['silence_timeout']}s", status)
    if not reached:
        why = console.init_failure(text)
        if why:
            return Verdict(BOOT_FAIL, f"guest init failed: {why}", status)
        err = [x for x in qemu_stderr.strip().splitlines() if x.strip()]
        if run.returncode not in (0, None) and err:
            return Verdict(BOOT_FAIL, f"QEMU exited {run.returncode}: {err[-1]}", status)
        shown = "no console output" if not text.strip() else "console ends before our init marker"
        return Verdict(BOOT_FAIL, f"guest init never reached ({shown}; QEMU exited {run.returncode})", status)
    if (Path(channel_dir) / "command_timed_out").exists():
        return Verdict(VM_TIMEOUT, "command exceeded its in-guest bound", status)
    done = _DONE_STATUS.search(text)
    if status is None and done:
        return Verdict(
            CHANNEL_LOST,
            f"the results channel closed early: the guest command finished (status "
            f"{done.group(1)}) but its later verdicts and exit status never reached the "
            "host; the console log has the guest's own table",
            int(done.group(1)),
        )
    if status is None:  # e.g. a triple fault: QEMU -no-reboot exits without any panic text
        tail = [console.strip_stamp(x) for x in text.splitlines() if x.strip()][-20:]
        return Verdict(PANIC, "guest died without panic text or exit status (triple fault or power-off)", None, tail)
    return Verdict(OK, f"command exited {status}", status)
