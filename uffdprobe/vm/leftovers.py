# SPDX-License-Identifier: GPL-2.0-only
"""Find QEMU or virtiofsd processes a boot may have left behind (used by tests and diagnostics)."""

import os

import psutil

NAMES = ("qemu-system", "virtiofsd")


def vm_processes(mentioning: str = None, ancestor: int = None) -> list:
    """QEMU/virtiofsd processes (live or unreaped) descending from `ancestor` (default: us) or naming `mentioning`."""
    ancestor = os.getpid() if ancestor is None else ancestor
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = " ".join(proc.info["cmdline"] or [])
            if not any(n in (proc.info["name"] or "") or n in text for n in NAMES):
                continue
            if (mentioning and mentioning in text) or any(p.pid == ancestor for p in proc.parents()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
