# SPDX-License-Identifier: GPL-2.0-only
"""Read a guest serial console log: our init's markers, the kernel version, panic text."""

import re

from uffdprobe.osutil.kmsg import splat_kind

INIT_REACHED = "uffdprobe-guest: init reached"
COMMAND_DONE = "uffdprobe-guest: command done"
INIT_FAILED = "uffdprobe-guest: init failed"
PANIC_LINE = "Kernel panic - not syncing"
PANIC_END = "---[ end Kernel panic"
# Lines that open the report leading to a panic; the earliest one near the panic starts the excerpt.
PANIC_START = re.compile(
    r"BUG:|Oops|INFO: task .* blocked|watchdog: |sysrq: Trigger a crash|"
    r"general protection|cut here|Call Trace|RIP:"
)
VERSION_RE = re.compile(r"Linux version (\S.*)")
MAX_PANIC_LINES = 200
LOOKBACK = 120


def has_panic(text: str) -> bool:
    """True when the kernel printed a panic."""
    return PANIC_LINE in text


def panic_lines(text: str) -> list:
    """The panic report: from the first report line before the panic to its end marker."""
    lines = [strip_stamp(x) for x in text.splitlines()]
    idx = next((i for i, line in enumerate(lines) if PANIC_LINE in line), None)
    if idx is None:
        return []
    start = idx
    for i in range(idx - 1, max(-1, idx - LOOKBACK), -1):
        if PANIC_START.search(lines[i]):
            start = i
    end = next((i for i in range(idx, len(lines)) if PANIC_END in lines[i]), len(lines) - 1)
    return [x for x in lines[start : end + 1] if x.strip()][:MAX_PANIC_LINES]


def row_report(text: str) -> list:
    """What the kernel reported while the guest's last workload ran, up to a panic: from the first BUG,
    Oops or WARNING after the guest's last line of output (its table prints each verdict as it lands) to
    the panic line, at most MAX_PANIC_LINES; [] when there is none. A crash that panics only later (a
    lock left held, then a soft lockup) is here with its first report, which panic_lines may not reach."""
    lines = [strip_stamp(x) for x in text.splitlines()]
    end = next((i for i, line in enumerate(lines) if PANIC_LINE in line), len(lines) - 1)
    last_said = max((i for i in range(end) if lines[i].strip() and not PRINTK_RE.match(lines[i])), default=-1)
    first = next((i for i in range(last_said + 1, end + 1) if splat_kind(PRINTK_RE.sub("", lines[i]))), None)
    if first is None:
        return []
    return [x for x in lines[first : end + 1] if x.strip()][:MAX_PANIC_LINES]


def panic_reason(text: str) -> str:
    """The 'Kernel panic - not syncing: ...' line without its timestamp."""
    for line in text.splitlines():
        if PANIC_LINE in line:
            return line[line.index(PANIC_LINE) :].strip()
    return ""


def linux_version(text: str) -> str:
    """The kernel's 'Linux version ...' banner, or '' when the console did not show it."""
    match = VERSION_RE.search(text)
    return match.group(1).strip() if match else ""


def init_failure(text: str) -> str:
    """Why our guest init gave up, or '' if it did not."""
    for line in text.splitlines():
        if INIT_FAILED in line:
            return line.split(INIT_FAILED, 1)[1].strip(": ").strip()
    return ""


PRINTK_RE = re.compile(r"^\[\s*\d+\.\d+\] ")


def guest_output(text: str) -> list:
    """What the guest command printed: console lines after our start marker, kernel messages left out."""
    lines = [strip_stamp(x) for x in text.splitlines()]
    start = next((i for i, x in enumerate(lines) if INIT_REACHED in x), None)
    if start is None:
        return []
    out = []
    for line in lines[start + 1 :]:
        if COMMAND_DONE in line:
            break
        if not PRINTK_RE.match(line):
            out.append(line)
    return out


def strip_stamp(line: str) -> str:
    """A console line without its trailing carriage return."""
    return line.rstrip("\r")
