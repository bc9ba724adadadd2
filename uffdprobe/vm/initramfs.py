# SPDX-License-Identifier: GPL-2.0-only
"""Build (and cache) the small initramfs that loads share drivers and mounts the host root."""

import hashlib
import os
from pathlib import Path
from typing import Optional

from . import modules as modmod
from .cpio import CpioWriter
from .errors import VmSetupError

INIT_SCRIPT = Path(__file__).with_name("initramfs_init.sh")
MOUNTS_SCRIPT = Path(__file__).with_name("guest_mounts.sh")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_busybox() -> Path:
    """A statically linked busybox on the host (the initramfs has no libc)."""
    for cand in BUSYBOX_CANDIDATES:
        path = Path(cand)
        if path.exists() and b"ld-linux" not in path.read_bytes()[:8192]:
            return path
    raise VmSetupError("no static busybox found: apt-get install busybox-static")


def build_initramfs(tree: Optional[modmod.ModuleTree], transport: str, cache_dir: Path) -> Path:
    """Return a cached initramfs holding busybox, the init script and the modules the transport needs."""
    busybox = find_busybox()
    wanted = modmod.TRANSPORT_MODULES[transport] + modmod.OPTIONAL_MODULES
    order = tree.load_order(wanted) if tree else []
    blobs = [(name, tree.module_bytes(name)) for name in order]
    key = hashlib.sha256()
    for part in [INIT_SCRIPT.read_bytes(), MOUNTS_SCRIPT.read_bytes(), busybox.read_bytes()] + [
        n.encode() + b for n, b in blobs
    ]:
        key.update(hashlib.sha256(part).digest())
    target = Path(cache_dir) / f"initramfs-{key.hexdigest()[:20]}.cpio.gz"
    if target.exists():
        return target
    archive = CpioWriter()
    for name in ("bin", "dev", "proc", "sys", "newroot", "modules"):
        archive.add_dir(name)
    archive.add_chardev("dev/console", 5, 1)
    archive.add_chardev("dev/null", 1, 3, 0o666)
    archive.add_file("bin/busybox", busybox.read_bytes(), 0o755)
    archive.add_file("init", INIT_SCRIPT.read_bytes(), 0o755)
    archive.add_file("guest_mounts.sh", MOUNTS_SCRIPT.read_bytes())
    archive.add_file("modules/order", "".join(n + "\n" for n, _ in blobs).encode())
    for name, blob in blobs:
        archive.add_file(f"modules/{name}.ko", blob)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(archive.to_bytes())
    os.replace(tmp, target)
    return target
