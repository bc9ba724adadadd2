# SPDX-License-Identifier: GPL-2.0-only
"""Kernel modules of an unpacked kernel: which exist, which are built in, load order."""

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path

from .errors import VmSetupError

# Root and results shares: each transport needs these drivers, built in or as modules.
TRANSPORT_MODULES = {
    "9p": ["virtio_pci", "9pnet_virtio", "9p"],
    "virtiofs": ["virtio_pci", "virtiofs"],
}
# Loaded when present, for the scratch disk; a kernel without them simply has no /dev/vda.
OPTIONAL_MODULES = ["virtio_blk"]


def canonical(name: str) -> str:
    """Module name as the kernel spells it (dashes become underscores, no suffix)."""
    base = name.rsplit("/", 1)[-1]
    for suffix in (".xz", ".zst", ".gz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if base.endswith(".ko"):
        base = base[:-3]
    return base.replace("-", "_")


class ModuleTree:
    """The lib/modules/RELEASE directory of one kernel, read through modules.dep."""

    def __init__(self, moddir: Path):
        self.moddir = Path(moddir)
        dep = self.moddir / "modules.dep"
        if not dep.exists():
            run_depmod(self.moddir)
        self.paths = {}
        self.deps = {}
        for line in dep.read_text().splitlines():
            if ":" not in line:
                continue
            mod, rest = line.split(":", 1)
            name = canonical(mod)
            self.paths[name] = self.moddir / mod
            self.deps[name] = [canonical(d) for d in rest.split()]
        builtin = self.moddir / "modules.builtin"
        self.builtin = set()
        if builtin.exists():
            self.builtin = {canonical(x) for x in builtin.read_text().split()}

    def has(self, name: str) -> bool:
        """True when the kernel offers this driver, built in or as a module."""
        return name in self.builtin or name in self.paths

    def load_order(self, names):
        """Module names to insmod, dependencies first, built-in ones left out."""
        order, seen = [], set()

        def visit(name):
            if name in seen or name in self.builtin:
                return
            seen.add(name)
            for dep in reversed(self.deps.get(name, [])):
                visit(dep)
            order.append(name)

        for name in names:
            if name in self.paths:
                visit(name)
        return order

    def module_bytes(self, name: str) -> bytes:
        """The module's ELF image, decompressed if the package ships it compressed."""
        path = self.paths[name]
        data = path.read_bytes()
        if path.name.endswith(".xz"):
            return lzma.decompress(data)
        if path.name.endswith(".zst"):
            return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True, timeout=60).stdout
        if path.name.endswith(".gz"):
            return gzip.decompress(data)
        return data


def run_depmod(moddir: Path) -> None:
    """Generate modules.dep for an unpacked tree (Debian packages leave that to postinst)."""
    depmod = shutil.which("depmod") or next((p for p in ("/usr/sbin/depmod", "/sbin/depmod") if Path(p).exists()), None)
    if not depmod:
        raise VmSetupError("depmod not found: install kmod (apt-get install kmod)")
    base = moddir.parent.parent.parent  # <root>/lib/modules/<release>
    proc = subprocess.run([depmod, "-b", str(base), moddir.name], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not (moddir / "modules.dep").exists():
        raise VmSetupError(f"depmod failed for {moddir}: {proc.stderr.strip()[:300]}")
