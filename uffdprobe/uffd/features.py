# SPDX-License-Identifier: GPL-2.0-only
"""What the running kernel offers: uffd API features and ioctls, access paths, THP, identity."""

import errno
import gzip
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from .errors import UffdError
from .flags import Feature, RegisterMode, absent_from_headers, names
from .memory import PAGE_SIZE, Mapping, memfd_create, mmap_anonymous, mmap_fd
from .pagemap import scan_unsupported
from .userfaultfd import Userfaultfd


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return None


def _sha256(data: bytes) -> str:
    """sha256 hex digest without hashlib where the interpreter has its own module: hashlib loads OpenSSL
    and blake2, which cost a guest's first verdict under TCG more than the hash itself."""
    try:
        from _sha256 import sha256  # CPython 3.11 (3.12 and later: _sha2)
    except ImportError:
        try:
            from _sha2 import sha256
        except ImportError:
            from hashlib import sha256
    digest: str = sha256(data).hexdigest()
    return digest


def kernel_identity() -> Dict[str, Optional[str]]:
    """uname -r, /proc/version and the sha256 of the .config in /proc/config.gz (unpacked: the same hash
    the kernel builder records) when the kernel exposes it."""
    config = None
    try:
        with gzip.open("/proc/config.gz", "rb") as f:
            config = _sha256(f.read())
    except (OSError, EOFError):
        pass
    uname = os.uname()  # what platform.release()/machine() return, without importing platform
    return {
        "release": uname.release,
        "version": _read("/proc/version"),
        "config_sha256": config,
        "machine": uname.machine,
    }


def thp_mode() -> Optional[str]:
    """The bracketed choice in /sys/kernel/mm/transparent_hugepage/enabled, None without THP."""
    text = _read("/sys/kernel/mm/transparent_hugepage/enabled")
    if not text or "[" not in text:
        return None
    return text.split("[", 1)[1].split("]", 1)[0]


@dataclass
class KernelFeatures:
    """A fingerprint of the running kernel's userfaultfd support, probed on throwaway fds."""

    kernel: Dict[str, Optional[str]]
    uffd_error: Optional[str] = None
    uffd_errno: Optional[int] = None
    features: List[str] = field(default_factory=list)
    api_ioctls: List[str] = field(default_factory=list)
    anon_ioctls: Dict[str, List[str]] = field(default_factory=dict)
    shmem_ioctls: Dict[str, List[str]] = field(default_factory=dict)  #: the same on a shared memfd page
    pagemap_scan: str = "not probed"  #: "available", or why PAGEMAP_SCAN cannot be asked (before 6.7)
    dev_userfaultfd: str = "absent"
    unprivileged_userfaultfd: Optional[str] = None
    thp: Optional[str] = None
    absent_from_headers: Dict[str, List[str]] = field(default_factory=dict)
    feature_bits: int = 0

    def has(self, feature: Feature) -> bool:
        return bool(self.feature_bits & int(feature))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _dev_state() -> str:
    if not os.path.exists("/dev/userfaultfd"):
        return "absent"
    return "accessible" if os.access("/dev/userfaultfd", os.R_OK | os.W_OK) else "no access"


def probe() -> KernelFeatures:
    """Open throwaway userfaultfds and record what the kernel grants; never raises for a missing feature."""
    kf = KernelFeatures(
        kernel=kernel_identity(),
        dev_userfaultfd=_dev_state(),
        unprivileged_userfaultfd=_read("/proc/sys/vm/unprivileged_userfaultfd"),
        thp=thp_mode(),
        absent_from_headers=absent_from_headers(),
        pagemap_scan=scan_unsupported() or "available",
    )
    try:
        with Userfaultfd.open() as uffd:
            info = uffd.api()
    except UffdError as exc:
        kf.uffd_error, kf.uffd_errno = str(exc), exc.errno
        return kf
    kf.feature_bits = int(info.available)
    kf.features = names(info.available)
    kf.api_ioctls = names(info.ioctls)
    modes = {
        "MISSING": RegisterMode.MISSING,
        "WP": RegisterMode.WP,
        "MISSING|WP": RegisterMode.MISSING | RegisterMode.WP,
    }
    if "MINOR" in RegisterMode.__members__:
        modes["MINOR"] = RegisterMode.MINOR
    for label, mode in modes.items():
        kf.anon_ioctls[label] = _register_probe(mode, info.available)
        kf.shmem_ioctls[label] = _register_probe(mode, info.available, shmem=True)
    return kf


def _register_probe(mode: RegisterMode, available: Feature, shmem: bool = False) -> List[str]:
    """The ioctls UFFDIO_REGISTER grants on one anonymous page (or one page of a memfd mapped shared) in
    `mode`, or why it refused."""
    wanted = (
        Feature.PAGEFAULT_FLAG_WP if mode & RegisterMode.WP and available & Feature.PAGEFAULT_FLAG_WP else Feature(0)
    )
    try:
        with Userfaultfd.open() as uffd, _probe_page(shmem) as page:
            uffd.api(wanted)
            return names(uffd.register(page.addr, PAGE_SIZE, mode))
    except UffdError as exc:
        return [f"refused: {errno.errorcode.get(exc.errno or 0, exc.errno)}"]


def _probe_page(shmem: bool) -> Mapping:
    """One anonymous page, or one page of a fresh memfd mapped shared (the fd closed: the mapping holds it)."""
    if not shmem:
        return mmap_anonymous(PAGE_SIZE)
    fd = memfd_create("uffdprobe-probe")
    try:
        os.ftruncate(fd, PAGE_SIZE)
        return mmap_fd(fd, PAGE_SIZE)
    finally:
        os.close(fd)


def format_text(kf: KernelFeatures) -> str:
    """The `uffdprobe features` report, one fact a line."""
    k = kf.kernel
    lines = [
        f"kernel: {k['release']} ({k['machine']})",
        f"config: sha256 {k['config_sha256']}" if k["config_sha256"] else "config: /proc/config.gz not exposed",
        f"/dev/userfaultfd: {kf.dev_userfaultfd}",
        f"vm.unprivileged_userfaultfd: {kf.unprivileged_userfaultfd if kf.unprivileged_userfaultfd is not None else 'absent'}",
        f"transparent hugepages: {kf.thp or 'not available'}",
    ]
    if kf.uffd_error:
        lines.append(f"userfaultfd: unavailable: {kf.uffd_error}")
    else:
        lines.append(f"features ({kf.feature_bits:#x}): " + ", ".join(kf.features))
        lines.append("api ioctls: " + ", ".join(kf.api_ioctls))
        for mode, ioctls in kf.anon_ioctls.items():
            lines.append(f"anon register {mode}: " + ", ".join(ioctls))
        for mode, ioctls in kf.shmem_ioctls.items():
            lines.append(f"shmem register {mode}: " + ", ".join(ioctls))
        lines.append(f"PAGEMAP_SCAN: {kf.pagemap_scan}")
    for group, missing in sorted(kf.absent_from_headers.items()):
        lines.append(f"not in build headers ({group}): " + ", ".join(missing))
    return "\n".join(lines)
