"""Classify one boot as exactly one of OK, PANIC, BOOT_FAIL, VM_TIMEOUT, with the evidence."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import console
from .qemu import QemuRun

OK, PANIC, BOOT_FAIL, VM_TIMEOUT = "OK", "PANIC", "BOOT_FAIL", "VM_TIMEOUT"


@dataclass
class Verdict:
    """The outcome, why, and what the guest reported."""

    outcome: str
    reason: str
    exit_status: Optional[int] = None
    panic_lines: list = field(default_factory=list)


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
        return Verdict(PANIC, console.panic_reason(text), status, lines)
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
    if status is None:  # e.g. a triple fault: QEMU -no-reboot exits without any panic text
        tail = [console.strip_stamp(x) for x in text.splitlines() if x.strip()][-20:]
        return Verdict(PANIC, "guest died without panic text or exit status (triple fault or power-off)",
                       None, tail)
    return Verdict(OK, f"command exited {status}", status)
