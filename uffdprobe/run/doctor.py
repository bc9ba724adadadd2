# SPDX-License-Identifier: GPL-2.0-only
"""What this machine can do for uffdprobe and what is missing, each missing thing with its exact fix.

`needed` marks what the README's main job (the matrix of the running kernel, stock, model-5.8 and
model-5.8-break-cow) cannot do without; everything else only narrows what runs (THP scenarios, KVM
speed, bisection, .deb kernels).
"""

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

#: The kernels of the README's main job (besides the running one).
MAIN_JOB_RECIPES = ("stock", "model-5.8", "model-5.8-break-cow")
#: Free space the cache needs: running cached kernels, and building one (source tree, objects, ccache).
FREE_TO_RUN, FREE_TO_BUILD = 2 << 30, 10 << 30
#: Kernel build toolchain: command or header -> the Debian package that brings it.
BUILD_TOOLS = {
    "gcc": "gcc",
    "make": "make",
    "bc": "bc",
    "flex": "flex",
    "bison": "bison",
    "cpio": "cpio",
    "patch": "patch",
    "xz": "xz-utils",
    "/usr/include/libelf.h": "libelf-dev",
    "/usr/include/openssl/ssl.h": "libssl-dev",
}


@dataclass
class Check:
    """One fact about the machine: `ok`, what was found, and when not ok the fix and its Debian packages."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    needed: bool = True
    packages: tuple = ()


def _have(tool: str) -> bool:
    return Path(tool).exists() if tool.startswith("/") else shutil.which(tool) is not None


def _apt(packages) -> str:
    return "apt-get install -y " + " ".join(packages)


def check_package() -> Check:
    import uffdprobe
    from uffdprobe.kbuild import recipes

    names = recipes.names()
    where = ", ".join(str(p) for p in recipes.search_path())
    return Check(
        "uffdprobe",
        bool(names),
        f"{uffdprobe.version()}; recipes: {', '.join(names) or 'none'}",
        "" if names else f"no recipe found in {where}: reinstall uffdprobe",
    )


def check_userfaultfd() -> List[Check]:
    from uffdprobe.uffd import features

    kf = features.probe()
    knobs = (
        f"/dev/userfaultfd {kf.dev_userfaultfd}, vm.unprivileged_userfaultfd="
        f"{kf.unprivileged_userfaultfd if kf.unprivileged_userfaultfd is not None else 'absent'}"
    )
    if kf.uffd_error:
        if kf.uffd_errno in (errno.EPERM, errno.EACCES):
            fix = (
                "run as root, or `sysctl -w vm.unprivileged_userfaultfd=1`, or give this user read-write "
                "access to /dev/userfaultfd"
            )
        else:
            fix = (
                "the running kernel has no usable userfaultfd (CONFIG_USERFAULTFD off or a seccomp filter): "
                "its column would be all SKIP; boot kernels that have it with --kernel"
            )
        checks = [Check("userfaultfd", False, f"{kf.uffd_error} ({knobs})", fix)]
    else:
        wp = "with" if "PAGEFAULT_FLAG_WP" in kf.features else "without"
        checks = [Check("userfaultfd", True, f"usable, features {kf.feature_bits:#x}, {wp} uffd-wp ({knobs})")]
    thp = kf.thp
    if thp in ("always", "madvise"):
        checks.append(Check("transparent hugepages", True, thp, needed=False))
    else:
        checks.append(
            Check(
                "transparent hugepages",
                False,
                thp or "not built into this kernel",
                "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (until then the thp memory kind is SKIP)"
                if thp
                else "the thp memory kind is SKIP on this kernel",
                needed=False,
            )
        )
    return checks


def check_vm_tools() -> List[Check]:
    from uffdprobe.vm import initramfs, qemu, resolve
    from uffdprobe.vm.errors import VmSetupError

    checks = []
    found = shutil.which(qemu.QEMU)
    checks.append(
        Check(
            "qemu",
            bool(found),
            found or f"{qemu.QEMU} not found",
            _apt(["qemu-system-x86"]),
            packages=("qemu-system-x86",),
        )
    )
    try:
        checks.append(Check("static busybox", True, str(initramfs.find_busybox())))
    except VmSetupError:
        checks.append(
            Check(
                "static busybox",
                False,
                "none (the guest's initramfs needs one)",
                _apt(["busybox-static"]),
                packages=("busybox-static",),
            )
        )
    depmod = shutil.which("depmod") or next((p for p in ("/usr/sbin/depmod", "/sbin/depmod") if Path(p).exists()), None)
    checks.append(
        Check(
            "depmod",
            bool(depmod),
            depmod or "not found (booting kernels with modules needs it)",
            _apt(["kmod"]),
            needed=False,
            packages=("kmod",),
        )
    )
    virtiofsd = resolve.VIRTIOFSD if Path(resolve.VIRTIOFSD).exists() else shutil.which("virtiofsd")
    checks.append(
        Check(
            "virtiofsd",
            bool(virtiofsd),
            virtiofsd or "not found (only kernels without 9p need it)",
            _apt(["qemu-system-common"]),
            needed=False,
            packages=("qemu-system-common",),
        )
    )
    if found:
        checks.append(check_accel())
    return checks


def check_accel() -> Check:
    """KVM or TCG, from the cached probe when there is one (a probe is a boot: doctor never runs one)."""
    from uffdprobe.vm import accel

    device = accel.kvm_device_usable()
    try:
        answer = accel.cached_answer()
    except (OSError, ValueError) as exc:
        answer = {"accel": "?", "reason": f"QEMU did not say its version: {exc}"}
    if answer:
        detail = f"{answer['accel'].upper()}: {answer['reason']} (cached probe, {accel.cache_file()})"
    elif device:
        detail = "/dev/kvm usable, not probed yet: the first boot probes KVM (at most 20 s, answer cached)"
    else:
        detail = "TCG: /dev/kvm missing or not accessible"
    kvm = bool(answer and answer["accel"] == "kvm") or (device and not answer)
    fix = (
        ""
        if kvm
        else (
            "guests run under TCG (about 10-30 s a boot): for KVM enable virtualization (modprobe "
            "kvm_intel or kvm_amd) and give this user read-write access to /dev/kvm; after a "
            f"failed probe, delete {accel.cache_file()} to probe again"
        )
    )
    return Check("acceleration", kvm, detail, fix, needed=False)


def check_kernels(cache_dir=None) -> List[Check]:
    """The main job's kernels: cached, or buildable here (toolchain and source present)."""
    from uffdprobe.kbuild import build, recipes, source
    from uffdprobe.kbuild.errors import KbuildError

    checks, to_build = [], []
    for name in MAIN_JOB_RECIPES:
        try:
            hit, why = build.cached(name, cache_dir=cache_dir), ""
        except (KbuildError, OSError) as exc:  # e.g. no gcc: its version is part of the cache key
            text = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else str(exc)
            hit, why = None, f" ({text})"
        if hit:
            checks.append(Check(f"kernel {name}", True, f"cached: {hit.bzimage}"))
        else:
            to_build.append(name)
            checks.append(Check(f"kernel {name}", True, f"not cached{why}: built on first use (minutes)"))
    missing = sorted({pkg for tool, pkg in BUILD_TOOLS.items() if not _have(tool)})
    tarballs = {recipes.load(n).source or str(source.DEFAULT_TARBALL) for n in MAIN_JOB_RECIPES}
    absent = sorted(t for t in tarballs if t.endswith(source.TARBALL_SUFFIXES) and not Path(t).exists())
    if any(t.startswith("/usr/src/linux-source-6.1") for t in absent):
        missing.append("linux-source-6.1")
    ok = not missing and not absent
    detail = "complete" if ok else "missing: " + ", ".join(missing + [t for t in absent if t not in missing])
    checks.append(
        Check(
            "kernel build toolchain",
            ok,
            detail,
            _apt(missing) if missing else f"put the kernel source at {', '.join(absent)}",
            needed=bool(to_build),
            packages=tuple(missing),
        )
    )
    for tool, pkg, what in (
        ("ccache", "ccache", "faster kernel rebuilds"),
        ("git", "git", "bisect"),
        ("dpkg-deb", "dpkg", "booting linux-image .deb files"),
    ):
        checks.append(
            Check(
                tool,
                _have(tool),
                shutil.which(tool) or f"not found (needed for {what})",
                _apt([pkg]),
                needed=False,
                packages=(pkg,),
            )
        )
    if not ok and to_build:
        for check in checks:
            if check.name.startswith("kernel ") and check.name[7:] in to_build:
                check.ok, check.detail = False, check.detail.split(":")[0] + ": cannot be built here"
                check.fix = "install the kernel build toolchain (below)"
    return checks


def check_cache(all_cached: bool) -> Check:
    from uffdprobe.vm.paths import cache_root

    root = cache_root()
    probe: Optional[Path] = root
    while probe is not None and not probe.exists():
        probe = probe.parent if probe != probe.parent else None
    if probe is None or not os.access(probe, os.W_OK):
        return Check(
            "cache",
            False,
            f"{root} cannot be created (nearest folder {probe} is not writable)",
            "point XDG_CACHE_HOME at a writable folder",
        )
    free = shutil.disk_usage(probe).free
    want = FREE_TO_RUN if all_cached else FREE_TO_BUILD
    detail = f"{root}: {free / 2**30:.1f} GiB free"
    return Check(
        "cache",
        free >= want,
        detail,
        f"free space there, or point XDG_CACHE_HOME at a disk with {want >> 30} GiB free "
        f"({'running' if all_cached else 'building'} kernels needs that much)",
    )


def diagnose(cache_dir=None) -> List[Check]:
    """Every check, in the order a user would fix them."""
    checks = [check_package()] + check_userfaultfd() + check_vm_tools()
    kernels = check_kernels(cache_dir)
    all_cached = all(
        c.detail.startswith("cached:")
        for c in kernels
        if c.name.startswith("kernel ") and c.name != "kernel build toolchain"
    )
    return checks + kernels + [check_cache(all_cached)]


def ready(checks: List[Check]) -> bool:
    """True when everything the main job needs is there."""
    return all(c.ok for c in checks if c.needed)


def apt_line(checks: List[Check], needed_only: bool) -> str:
    """One apt-get line for the Debian packages behind failed checks ('' when none)."""
    pkgs = sorted({p for c in checks if not c.ok and (c.needed or not needed_only) for p in c.packages})
    return _apt(pkgs) if pkgs else ""
