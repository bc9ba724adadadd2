# SPDX-License-Identifier: GPL-2.0-only
"""Debian kernel packages: download one with apt-get, unpack it, find its image, modules and config."""

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from uffdprobe.osutil import children
from uffdprobe.osutil.procs import owner_gone
from .errors import VmInputError, VmSetupError

DPKG_TIMEOUT = 300.0
UNPACK_SUBDIR = "debian-kernels"  # under the user cache dir; "kernels" belongs to the kernel builder


@dataclass(frozen=True)
class UnpackedKernel:
    """A kernel package unpacked into the cache: image, modules directory, config."""

    image: Path
    moddir: Optional[Path]
    config: Optional[Path]
    package: str


def newest_package(pattern: str, timeout: float = 60) -> str:
    """Name of the highest-versioned package whose name fully matches the regex (via apt-cache)."""
    proc = subprocess.run(
        ["apt-cache", "search", "--names-only", pattern], capture_output=True, text=True, timeout=timeout
    )
    names = [line.split(" ", 1)[0] for line in proc.stdout.splitlines()]
    names = [n for n in names if re.fullmatch(pattern, n)]
    if not names:
        raise VmSetupError(f"apt-cache knows no package matching {pattern!r}: run apt-get update")
    return max(names, key=lambda n: [int(x) if x.isdigit() else 0 for x in re.split(r"[.+-]", n)])


def fetch_deb(package: str, dest_dir: Path, timeout: float = 300) -> Path:
    """The .deb of a package in dest_dir, fetched with `apt-get download` unless already there."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(dest_dir.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    proc = subprocess.run(
        ["apt-get", "download", package], cwd=dest_dir, capture_output=True, text=True, timeout=timeout
    )
    found = sorted(dest_dir.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        raise VmSetupError(f"apt-get download {package} failed: {proc.stderr.strip()[-300:]}")
    return found[-1]


def unpack_kernel_deb(deb: Path, cache_dir: Path) -> UnpackedKernel:
    """Unpack a linux-image .deb once into cache_dir and locate its parts."""
    deb = Path(deb)
    package = _package_name(deb)
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()[:16]
    dest = Path(cache_dir) / f"{package}-{digest}"
    _sweep_dead_unpacks(Path(cache_dir))
    if not (dest / ".complete").exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _dpkg_extract(deb, tmp)
            (tmp / ".complete").write_text(str(deb) + "\n")
            os.rename(tmp, dest)
        except OSError:
            if not (dest / ".complete").exists():
                raise
            # another process unpacked the same package first: use theirs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # on every path: error, Ctrl-C, SIGTERM, or theirs won
    images = sorted((dest / "boot").glob("vmlinuz-*"))
    if not images:
        raise VmInputError(f"{deb} holds no boot/vmlinuz-*: give a linux-image-* package")
    release = images[-1].name[len("vmlinuz-") :]
    moddir = dest / "lib" / "modules" / release
    config = dest / "boot" / f"config-{release}"
    return UnpackedKernel(
        image=images[-1],
        moddir=moddir if moddir.is_dir() else None,
        config=config if config.exists() else None,
        package=package,
    )


def _dpkg_extract(deb: Path, into: Path, timeout: float = DPKG_TIMEOUT) -> None:
    """dpkg-deb -x in its own process group, tied to our lifetime (it dies even if we are SIGKILLed),
    stopped and reaped on every way out of here."""
    with children.signals_blocked():
        proc = children.spawn(
            ["dpkg-deb", "-x", str(deb), str(into)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VmSetupError(f"dpkg-deb -x {deb} took longer than {timeout:.0f} s") from None
    finally:
        children.stop(proc)
    if proc.returncode != 0:
        raise VmInputError(
            f"cannot unpack {deb}: {_first_cause(err, deb)}; fetch the package again "
            "(apt-get download) or give another kernel"
        )


def _first_cause(stderr: bytes, deb: Path) -> str:
    """dpkg-deb's first complaint, one line and whole (later lines are tar's echoes of it), without the
    program's own prefix, the package named once (by the caller) rather than again in quotes."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return "dpkg-deb failed without saying why"
    first = lines[0].replace(f"'{deb}'", "the package")
    for prefix in ("dpkg-deb (subprocess): ", "dpkg-deb: error: ", "dpkg-deb: "):
        if first.startswith(prefix):
            return first[len(prefix) :]
    return first


def _sweep_dead_unpacks(cache_dir: Path) -> None:
    """Remove NAME.tmpPID trees that an unpack killed outright (SIGKILL) left behind."""
    for path in cache_dir.glob("*.tmp[0-9]*") if cache_dir.is_dir() else []:
        pid = path.name.rsplit(".tmp", 1)[-1]
        if pid.isdigit() and owner_gone(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _package_name(deb: Path) -> str:
    if not deb.is_file():
        raise VmInputError(f"{deb} is not a file: give a Debian linux-image .deb")
    try:
        proc = subprocess.run(["dpkg-deb", "-f", str(deb), "Package"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise VmSetupError("dpkg-deb not found: .deb kernels need dpkg") from None
    name = proc.stdout.strip()
    if proc.returncode != 0 or not name:
        raise VmInputError(f"{deb} is not a Debian package: give a linux-image .deb or a bzImage")
    if not name.startswith("linux-image"):
        raise VmInputError(f"{deb} is package {name}, not a kernel: give a linux-image-* .deb")
    return name


CLOUD_61_PATTERN = r"linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned"


def debian_cloud_kernel(dest_dir: Path) -> Path:
    """The newest Debian 6.1 cloud kernel .deb, downloaded into dest_dir on first use."""
    cached = sorted(Path(dest_dir).glob("linux-image-6.1.0-*-cloud-amd64-unsigned_*.deb"))
    try:
        try:
            name = newest_package(CLOUD_61_PATTERN)
        except VmSetupError:
            if os.geteuid() != 0:
                raise
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300)  # fresh machine
            name = newest_package(CLOUD_61_PATTERN)
        return fetch_deb(name, dest_dir)
    except (VmSetupError, OSError, subprocess.SubprocessError):
        if cached:  # offline: the last one fetched still is a Debian cloud kernel
            return cached[-1]
        raise
