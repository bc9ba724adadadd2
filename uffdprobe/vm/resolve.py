# SPDX-License-Identifier: GPL-2.0-only
"""Turn the KERNEL argument (bzImage, vmlinuz, .deb or a tuxmake folder) into what QEMU needs to boot it."""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import distro, initramfs, tuxmake
from .errors import VmInputError, VmSetupError
from .kernel import KernelIdentity, identify_image
from .modules import TRANSPORT_MODULES, ModuleTree
from .paths import cache_root

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"


@dataclass(frozen=True)
class BootKernel:
    """A kernel ready to boot: image, optional initramfs, and how the host root reaches it."""

    identity: KernelIdentity
    initrd: Optional[Path]
    transport: str  # "9p" or "virtiofs"


def resolve_kernel(kernel, cache_dir: Path = None) -> BootKernel:
    """Resolve a kernel argument; VmInputError/VmSetupError say what to do when it cannot boot here."""
    cache_dir = Path(cache_dir) if cache_dir else cache_root()
    path = Path(kernel)
    config = moddir = None
    if path.is_dir():  # a tuxmake output folder: its bzImage, config and modules.tar.xz
        build = tuxmake.read(path)
        identity = identify_image(build.image)
        path, config = build.image, build.config
        moddir = tuxmake.module_dir(build, identity.release, cache_dir)
    elif path.suffix == ".deb":
        unpacked = distro.unpack_kernel_deb(path, cache_dir / distro.UNPACK_SUBDIR)
        path, moddir, config = unpacked.image, unpacked.moddir, unpacked.config
    identity = identify_image(path)
    if moddir is None:
        moddir = _find_moddir(identity)
    if config is None:
        config = _find_config(identity)
    if moddir is not None:
        tree = ModuleTree(moddir)
        transport = _pick_transport(lambda name: tree.has(name), identity)
        initrd = initramfs.build_initramfs(tree, transport, cache_dir / "initramfs")
        return BootKernel(identity, initrd, transport)
    options = read_kconfig(config) if config else {}
    if not options:  # nothing known: assume a kernel built for this harness, 9p built in
        return BootKernel(identity, None, "9p")
    transport = _pick_transport(lambda name: options.get(KCONFIG_OF[name]) == "y", identity, options)
    initrd = None if transport == "9p" else initramfs.build_initramfs(None, transport, cache_dir / "initramfs")
    return BootKernel(identity, initrd, transport)


KCONFIG_OF = {
    "virtio_pci": "CONFIG_VIRTIO_PCI",
    "9pnet_virtio": "CONFIG_NET_9P_VIRTIO",
    "9p": "CONFIG_9P_FS",
    "virtiofs": "CONFIG_VIRTIO_FS",
}


def read_kconfig(path: Path) -> dict:
    """CONFIG_X -> value for every set option of a kernel .config."""
    options = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            options[key] = value.strip().strip('"')
    return options


def _pick_transport(has, identity: KernelIdentity, options: dict = None) -> str:
    if all(has(m) for m in TRANSPORT_MODULES["9p"]):
        return "9p"
    if all(has(m) for m in TRANSPORT_MODULES["virtiofs"]):
        if not Path(VIRTIOFSD).exists() and not shutil.which("virtiofsd"):
            raise VmSetupError(
                f"kernel {identity.release} has no 9p, only virtiofs, and no virtiofsd is "
                "installed: apt-get install qemu-system-common"
            )
        return "virtiofs"
    if options is not None and any(options.get(KCONFIG_OF[m]) == "m" for m in KCONFIG_OF):
        raise VmInputError(
            f"kernel {identity.path} has 9p/virtio as modules but no lib/modules/"
            f"{identity.release} was found: pass the .deb, or build them in (=y)"
        )
    raise VmInputError(
        f"kernel {identity.release or identity.path} has neither 9p nor virtiofs over "
        "virtio-pci: enable CONFIG_NET_9P_VIRTIO and CONFIG_9P_FS (or CONFIG_VIRTIO_FS)"
    )


def _find_moddir(identity: KernelIdentity) -> Optional[Path]:
    if not identity.release:
        return None
    beside = identity.path.parent.parent / "lib" / "modules" / identity.release  # <root>/boot/vmlinuz-*
    for cand in (beside, Path("/lib/modules") / identity.release):
        if (cand / "modules.dep").exists() or (cand / "kernel").is_dir():
            return cand
    return None


def _find_config(identity: KernelIdentity) -> Optional[Path]:
    image = identity.path
    cands = [image.parent / ".config", image.parent / f"config-{identity.release}"]
    if len(image.parents) >= 4:
        cands.append(image.parents[3] / ".config")  # <tree>/arch/x86/boot/bzImage
    return next((c for c in cands if c.is_file()), None)
