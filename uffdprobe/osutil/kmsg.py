# SPDX-License-Identifier: GPL-2.0-only
"""The kernel log (/dev/kmsg) and taint (/proc/sys/kernel/tainted), read around a workload.

One reader per run keeps /dev/kmsg open and reads it in order: what it reads before a workload starts is
"between workloads", what it reads once the workload ended was logged while it ran. Records are the kernel's
own (`PRIO,SEQ,USEC,FLAGS;TEXT`, Documentation/ABI/testing/dev-kmsg); a splat is a record that opens a
kernel report: WARN for "WARNING:" (lockdep's "possible ... locking" reports are WARNINGs too), OOPS for
"BUG:", "Oops:", "kernel BUG at", "general protection fault" and KASAN reports. Only the kernel's own
records count (facility 0): a line a program writes into /dev/kmsg is logged as LOG_USER. Reading needs CAP_SYSLOG
where kernel.dmesg_restrict is 1: when the log cannot be read the reader says why, never that it was clean.
"""

import errno
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional

KMSG = "/dev/kmsg"
TAINTED = "/proc/sys/kernel/tainted"
#: One record is at most about 1 KiB of text plus its dictionary; a read with a smaller buffer is EINVAL.
RECORD_BUFFER = 16384
#: Records kept of one window (a workload's or the run's between workloads), from just before its first
#: splat on: a WARN(cond, fmt) prints "cut here" and its message before the WARNING line.
MAX_LINES = 80
LINES_BEFORE = 2

#: kernel/panic.c's taint_flags, by bit: (letter, name).
TAINT_BITS = (
    ("P", "PROPRIETARY_MODULE"),
    ("F", "FORCED_MODULE"),
    ("S", "CPU_OUT_OF_SPEC"),
    ("R", "FORCED_RMMOD"),
    ("M", "MACHINE_CHECK"),
    ("B", "BAD_PAGE"),
    ("U", "USER"),
    ("D", "DIE"),
    ("A", "OVERRIDDEN_ACPI_TABLE"),
    ("W", "WARN"),
    ("C", "CRAP"),
    ("I", "FIRMWARE_WORKAROUND"),
    ("O", "OOT_MODULE"),
    ("E", "UNSIGNED_MODULE"),
    ("L", "SOFTLOCKUP"),
    ("K", "LIVEPATCH"),
    ("X", "AUX"),
    ("T", "RANDSTRUCT"),
    ("N", "TEST"),
)

_OOPS = re.compile(
    r"^(?:\S+: )?(?:BUG:|Oops\b|kernel BUG at|general protection fault|Unable to handle kernel)"
    r"|KASAN:"
)
_WARN = re.compile(r"^(?:\S+: )?WARNING:|possible \S+(?: \S+)? lock(?:ing)? ")


@dataclass(frozen=True)
class Record:
    """One /dev/kmsg record: sequence number, log level (0 emerg .. 7 debug), microseconds since boot, text,
    syslog facility (0: the kernel's own; 1: LOG_USER, what user space writes into /dev/kmsg)."""

    seq: int
    level: int
    usec: int
    text: str
    facility: int = 0

    def line(self) -> str:
        """As dmesg prints it: '[  12.345678] text'."""
        return f"[{self.usec // 1000000:5d}.{self.usec % 1000000:06d}] {self.text}"


def parse_record(raw: bytes) -> Optional[Record]:
    """A record as read from /dev/kmsg (its dictionary lines dropped), or None if it is not one."""
    head, sep, rest = raw.decode(errors="replace").partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3:
        return None
    try:
        prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        return None
    text = rest.split("\n", 1)[0]
    return Record(seq, prio & 7, usec, text, prio >> 3)


def splat_kind(text: str) -> Optional[str]:
    """'OOPS' or 'WARN' for a record text that opens a kernel report of that kind, else None."""
    if _OOPS.search(text):
        return "OOPS"
    if _WARN.search(text):
        return "WARN"
    return None


def taint_names(bits: int) -> List[str]:
    """'W (WARN)'-style names of the set taint bits, lowest first; an unknown bit by its number."""
    out = []
    for bit in range(max(bits.bit_length(), 0)):
        if bits >> bit & 1:
            out.append(f"{TAINT_BITS[bit][0]} ({TAINT_BITS[bit][1]})" if bit < len(TAINT_BITS) else f"bit {bit}")
    return out


def read_taint() -> Optional[int]:
    """/proc/sys/kernel/tainted, or None where it cannot be read (no PROC_SYSCTL)."""
    try:
        with open(TAINTED) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


@dataclass
class Window:
    """What the kernel logged in one window: the records read (a bounded excerpt from the first splat on),
    the splat kinds found in order, records the ring buffer overwrote before we read them, the taint
    before and after (None where /proc/sys/kernel/tainted is not there) and the bits it gained."""

    seq_before: Optional[int] = None  # the last record read before the window opened (None: none yet)
    first_seq: Optional[int] = None
    last_seq: Optional[int] = None
    records: int = 0
    kinds: List[str] = field(default_factory=list)
    lines: List[str] = field(default_factory=list)
    lines_cut: int = 0
    lost: int = 0
    recent: List[str] = field(default_factory=list)  # the last LINES_BEFORE lines before the first splat
    taint_before: Optional[int] = None
    taint_after: Optional[int] = None
    new_taint: int = 0

    def taint_now(self, bits: Optional[int], last: Optional[int]) -> None:
        """The taint read now: `last` was read when this window (or its latest stretch) began."""
        self.taint_after = bits
        if bits is not None and last is not None:
            self.new_taint |= bits & ~last

    def add(self, record: Record) -> None:
        if self.first_seq is None:
            self.first_seq = record.seq
        self.last_seq = record.seq
        self.records += 1
        kind = splat_kind(record.text) if record.facility == 0 else None
        if kind:
            if not self.kinds:
                self.lines += self.recent
            self.kinds.append(kind)
        elif not self.kinds:
            self.recent = (self.recent + [record.line()])[-LINES_BEFORE:]
        if self.kinds:
            if len(self.lines) < MAX_LINES:
                self.lines.append(record.line())
            else:
                self.lines_cut += 1


class KernelLog:
    """/dev/kmsg opened once, read forward. `from_start`: from the oldest record kept (a guest whose whole
    boot is ours), else from the next record the kernel logs (the host, whose earlier log is not ours)."""

    def __init__(self, from_start: bool = False):
        self.error: Optional[str] = None
        self.fd: Optional[int] = None
        self.seq: Optional[int] = None  # the last record read
        try:
            self.fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_SET if from_start else os.SEEK_END)
        except OSError as exc:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            hint = (
                " (needs CAP_SYSLOG while kernel.dmesg_restrict is 1)"
                if exc.errno in (errno.EPERM, errno.EACCES)
                else ""
            )
            self.error = f"cannot read {KMSG}: {exc.strerror}{hint}"

    @property
    def readable(self) -> bool:
        return self.fd is not None

    def read(self, window: Window) -> Window:
        """Read every record logged since the last read into `window` (nothing if unreadable)."""
        while self.fd is not None:
            try:
                raw = os.read(self.fd, RECORD_BUFFER)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EINTR):  # EPIPE: overwritten before we read them (the
                    continue  # gap in sequence numbers counts them)
                self.error = f"reading {KMSG} failed: {exc.strerror}"
                self.close()
                break
            if not raw:
                break
            record = parse_record(raw)
            if record is not None:
                if self.seq is not None and record.seq > self.seq + 1:
                    window.lost += record.seq - self.seq - 1
                self.seq = record.seq
                window.add(record)
        return window

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "KernelLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
