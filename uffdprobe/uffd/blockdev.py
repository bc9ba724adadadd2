# SPDX-License-Identifier: GPL-2.0-only
"""Is a block device free scratch? Only a device positively shown blank, that nothing uses, may take our
writes.

An O_DIRECT scenario writes pages at offset 0 of a block-device target, so a device holding a
partition table or a filesystem would lose it. `why_not_scratch` says what was found, or None:
mounted (mountinfo), swap (/proc/swaps), held (sysfs holders), partitioned (sysfs), busy (an
O_EXCL open fails while the kernel holds it), or not shown blank. Blank takes every probe agreeing:
`blkid -p` (util-linux's low-level probe of every superblock and partition table libblkid knows)
finds nothing (exit 2), `wipefs` lists no signature (it lists all of them, where blkid gives up on
two: exit 8, "ambivalent"), and none of the common magics below is on the device. A probe that
fails, times out, is ambivalent or is not installed leaves the device refused.
"""

import os
import shutil
import subprocess
from typing import Dict, List, Optional

BLKID_TIMEOUT = 30

#: (offset, magic, what): the fallback when blkid is not installed.
MAGICS = [
    (0x438, b"\x53\xef", "an ext2/3/4 filesystem"),
    (0, b"XFSB", "an xfs filesystem"),
    (0x10040, b"_BHRfS_M", "a btrfs filesystem"),
    (0x1FE, b"\x55\xaa", "a dos partition table or boot sector"),
    (0x200, b"EFI PART", "a gpt partition table"),
    (0xFF6, b"SWAPSPACE2", "swap space"),
    (0, b"LUKS\xba\xbe", "a LUKS volume"),
    (0x218, b"LVM2 001", "an LVM physical volume"),
]


def why_not_scratch(device: str) -> Optional[str]:
    """None when `device` is a block device nothing uses and no signature marks as holding data;
    else what was found, e.g. 'it holds an ext4 filesystem (blkid)'."""
    return _in_use(device) or _signature(device)


def _majmin(device: str) -> str:
    rdev = os.stat(device).st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _in_use(device: str) -> Optional[str]:
    majmin = _majmin(device)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[2] == majmin:
                return f"it is mounted at {_unescape(fields[4])}"
    rdev = os.stat(device).st_rdev
    try:
        with open("/proc/swaps") as f:
            for line in f.readlines()[1:]:
                name = _unescape(line.split()[0])
                if os.path.exists(name) and os.stat(name).st_rdev == rdev:
                    return "it is in use as swap"
    except OSError:
        pass
    sysdir = f"/sys/dev/block/{majmin}"
    holders = _listdir(os.path.join(sysdir, "holders"))
    if holders:
        return f"it is held by {', '.join(sorted(holders))}"
    parts = [d for d in _listdir(sysdir) if os.path.exists(os.path.join(sysdir, d, "partition"))]
    if parts:
        return f"it has partitions ({', '.join(sorted(parts))})"
    try:
        os.close(os.open(device, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC))
    except OSError as exc:
        return f"it cannot be opened exclusively ({exc.strerror}): something holds it"
    return None


def _signature(device: str) -> Optional[str]:
    """None only when blkid and wipefs both ran and found nothing, and no magic of MAGICS is there."""
    blkid, listed = _blkid(device), _wipefs(device)
    if blkid == _AMBIVALENT and listed:  # wipefs names each signature blkid would not choose between
        return f"{listed}; blkid -p: ambivalent result"
    return blkid or listed or _magic(device)


_AMBIVALENT = "it carries more than one signature (blkid -p: ambivalent result)"


def _tool(name: str) -> Optional[str]:
    return shutil.which(name) or next((p for p in (f"/sbin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)


def _probe(name: str, argv: List[str]) -> "subprocess.CompletedProcess[str] | str":
    """The finished probe, or why it could not say anything (not installed, failed to start, timed out)."""
    tool = _tool(name)
    if tool is None:
        return f"{name} (util-linux) is not installed, so it cannot be shown blank"
    try:
        return subprocess.run([tool, *argv], capture_output=True, text=True, timeout=BLKID_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"{name} did not answer within {BLKID_TIMEOUT} s, so it cannot be shown blank"
    except OSError as exc:
        return f"{name} could not run ({exc.strerror}), so it cannot be shown blank"


def _blkid(device: str) -> Optional[str]:
    proc = _probe("blkid", ["-p", "-o", "export", device])
    if isinstance(proc, str):
        return proc
    if proc.returncode == 2:  # blkid: nothing found
        return None
    if proc.returncode == 0:
        found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        return f"it holds {_describe(found)} (blkid -p)"
    if proc.returncode == 8:
        return _AMBIVALENT
    said = (proc.stderr.strip().splitlines() or [""])[-1]
    return f"blkid -p failed (exit {proc.returncode}{': ' + said if said else ''}), so it cannot be shown blank"


def _wipefs(device: str) -> Optional[str]:
    proc = _probe("wipefs", ["--noheadings", "--output", "OFFSET,TYPE", device])
    if isinstance(proc, str):
        return proc
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or [""])[-1]
        return f"wipefs failed (exit {proc.returncode}{': ' + said if said else ''}), so it cannot be shown blank"
    found = [" at ".join(reversed(line.split(None, 1))) for line in proc.stdout.splitlines() if line.strip()]
    return f"it carries {', '.join(found)} (wipefs)" if found else None


def _describe(found: Dict[str, str]) -> str:
    if "PTTYPE" in found:
        return f"a {found['PTTYPE']} partition table"
    kind = found.get("TYPE", "unknown")
    usage = found.get("USAGE", "filesystem")
    usage = {"filesystem": "filesystem", "raid": "RAID member", "crypto": "encrypted volume"}.get(usage, usage)
    return f"a{'n' if kind[:1] in 'aeiou' else ''} {kind} {usage}"


def _magic(device: str) -> Optional[str]:
    with open(device, "rb") as f:
        head = f.read(0x10100)
    for offset, magic, what in MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return f"it holds {what} (magic at byte {offset})"
    return None


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _unescape(field: str) -> str:
    """mountinfo and /proc/swaps write space, tab, newline and backslash as octal escapes."""
    return field.encode().decode("unicode_escape") if "\\" in field else field
