# SPDX-License-Identifier: GPL-2.0-only
"""What a uffdprobe guest needs from a kernel's final .config, checked before `make` spends minutes.

REQUIRED: without these the guest cannot boot or answer under the harness (QEMU's virtio-pci
root over 9p or virtiofs, the serial console it watches, the mounts its init makes); a kernel
lacking one is refused with exit 4 (Exit.CONFIG_DROPPED), naming every missing option.
OPTIONAL: without these the kernel boots and the scenarios that need them SKIP with a reason
(the no-userfaultfd recipe lacks USERFAULTFD on purpose); each missing one is a warning line.
Kernels here are built without modules, so only =y counts.
"""

import sys
from pathlib import Path

from .errors import GuestNeedsMissing

# option (or alternatives joined by " | ", each an AND of options joined by " + ") -> why
REQUIRED = {
    "CONFIG_64BIT": "the guest runs the host's x86_64 Python",
    "CONFIG_BINFMT_ELF": "the guest runs ELF programs",
    "CONFIG_BINFMT_SCRIPT": "the guest's init is a shell script",
    "CONFIG_PCI + CONFIG_VIRTIO_PCI": "QEMU's virtio devices sit on PCI",
    "CONFIG_NET_9P_VIRTIO + CONFIG_9P_FS | CONFIG_VIRTIO_FS": "the host root and results channel are 9p or virtiofs",
    "CONFIG_SERIAL_8250 + CONFIG_SERIAL_8250_CONSOLE": "the harness reads the boot on the serial console",
    "CONFIG_PROC_FS": "init mounts /proc",
    "CONFIG_SYSFS": "init mounts /sys",
    "CONFIG_DEVTMPFS": "init mounts /dev",
    "CONFIG_TMPFS": "init mounts tmpfs on /run and /tmp",
    "CONFIG_FUTEX": "Python's threads need futexes",
}
OPTIONAL = {
    "CONFIG_USERFAULTFD": "every userfaultfd scenario will SKIP",
    "CONFIG_HAVE_ARCH_USERFAULTFD_WP": "the uffd-wp scenarios will SKIP",
    "CONFIG_TRANSPARENT_HUGEPAGE": "the anon-thp memory kind will SKIP",
    "CONFIG_VIRTIO_BLK": "the O_DIRECT scenarios (scratch disk /dev/vda) will SKIP",
    "CONFIG_CROSS_MEMORY_ATTACH": "wp-gup-process-vm-readv will SKIP",
    "CONFIG_PROC_PAGE_MONITOR": "no /proc/PID/pagemap evidence",
    "CONFIG_DETECT_HUNG_TASK": "no hung-task reports in a HANG's evidence",
    "CONFIG_IKCONFIG_PROC": "no /proc/config.gz in the guest",
}


def missing(rule: str, final: dict) -> str:
    """'' when the .config satisfies `rule`, else the options to set (of the first alternative)."""
    alternatives = [[o.strip() for o in alt.split("+")] for alt in rule.split("|")]
    for options in alternatives:
        if all(final.get(o) == "y" for o in options):
            return ""
    return " or ".join(" and ".join(f"{o}=y" for o in options if final.get(o) != "y") for options in alternatives)


def check(final: dict, config: Path, log=None) -> list:
    """Raise GuestNeedsMissing (exit 4) naming every missing REQUIRED option; warn about OPTIONAL ones.

    Returns the warning lines printed."""
    lacking = [(missing(rule, final), why) for rule, why in REQUIRED.items()]
    lacking = [(what, why) for what, why in lacking if what]
    if lacking:
        shown = "; ".join(f"{what} ({why})" for what, why in lacking)
        raise GuestNeedsMissing(
            f"{config} cannot boot as a uffdprobe guest: set {shown} in a config fragment",
            [what for what, _ in lacking],
        )
    warnings = [
        f"kbuild: warning: {rule} is not set in {config}: {why}"
        for rule, why in OPTIONAL.items()
        if final.get(rule) != "y"
    ]
    for line in warnings:
        print(line, file=sys.stderr, flush=True)
        if log is not None:
            log.write(line + "\n")
    return warnings
