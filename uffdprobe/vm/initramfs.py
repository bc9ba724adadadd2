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


def build_initramfs(tree: Optional[modmod.ModuleTree], transport: str, cache_dir: Path,
                    ram_tree: Optional[Path] = None) -> Path:
    """Return a cached initramfs holding busybox, the init script and the modules the transport needs, and
    `ram_tree` (a folder named by its content, e.g. the guest's Python image) as /py, which the init copies
    to /run/uffdprobe/py on the guest's root before handing over."""
    busybox = find_busybox()
    wanted = modmod.TRANSPORT_MODULES[transport] + modmod.OPTIONAL_MODULES
    order = tree.load_order(wanted) if tree else []
    blobs = [(name, tree.module_bytes(name)) for name in order]
    key = hashlib.sha256()
    for part in [INIT_SCRIPT.read_bytes(), MOUNTS_SCRIPT.read_bytes(), busybox.read_bytes()] + [n.encode() + b for n, b in blobs]:
        key.update(hashlib.sha256(part).digest())
    extra = sorted(p for p in Path(ram_tree).rglob("*") if p.is_file()) if ram_tree else []
    key.update(str(ram_tree or "").encode())
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
    if ram_tree:
        archive.add_dir("py")
        for sub in sorted(p for p in Path(ram_tree).rglob("*") if p.is_dir()):
            archive.add_dir(f"py/{sub.relative_to(ram_tree)}")
        for path in extra:
            archive.add_file(f"py/{path.relative_to(ram_tree)}", path.read_bytes(), path.stat().st_mode & 0o777)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(archive.to_bytes(compress=not ram_tree))  # unpacking gzip under TCG costs more than it saves
    os.replace(tmp, target)
    return target
