# SPDX-License-Identifier: GPL-2.0-only
"""Recognise a kernel image file: x86 boot header, version string, content hash."""

from dataclasses import dataclass
from pathlib import Path

from .errors import VmInputError
from uffdprobe.osutil.files import sha256_file

SETUP_MAGIC_OFFSET = 0x202  # "HdrS" in the x86 boot protocol setup header
VERSION_PTR_OFFSET = 0x20E  # kernel_version: offset of the version string, minus 0x200


@dataclass(frozen=True)
class KernelIdentity:
    """Which kernel ran: its file, content hash and version string."""

    path: Path
    sha256: str
    version: str  # from the image header; replaced by the console "Linux version" line when seen
    release: str  # first word of the version string, e.g. 6.1.0-56-cloud-amd64


def header_version(head: bytes) -> str:
    """The version string a bzImage carries in its setup header, or '' if none."""
    if len(head) < VERSION_PTR_OFFSET + 2 or head[SETUP_MAGIC_OFFSET : SETUP_MAGIC_OFFSET + 4] != b"HdrS":
        return ""
    ptr = int.from_bytes(head[VERSION_PTR_OFFSET : VERSION_PTR_OFFSET + 2], "little")
    if ptr == 0:
        return ""
    start = ptr + 0x200
    end = head.find(b"\0", start)
    if start >= len(head) or end < 0:
        return ""
    return head[start:end].decode("ascii", "replace").strip()


def identify_image(path) -> KernelIdentity:
    """Check that path is an x86 bzImage and return its identity; VmInputError says what is wrong."""
    path = Path(path)
    if not path.exists():
        raise VmInputError(f"kernel {path} does not exist: give a bzImage/vmlinuz path or a Debian linux-image .deb")
    if path.is_dir():
        raise VmInputError(f"kernel {path} is a directory: give the bzImage inside it (e.g. arch/x86/boot/bzImage)")
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError as exc:
        raise VmInputError(
            f"kernel {path} cannot be read ({exc.strerror}): make it readable (chmod a+r {path}) or give another kernel"
        ) from None
    if head[SETUP_MAGIC_OFFSET : SETUP_MAGIC_OFFSET + 4] != b"HdrS":
        raise VmInputError(
            f"{path} is not an x86 kernel image (no bzImage boot header): "
            "give a bzImage/vmlinuz or a Debian linux-image .deb"
        )
    version = header_version(head)
    return KernelIdentity(
        path=path.resolve(), sha256=sha256_file(path), version=version, release=version.split(" ")[0] if version else ""
    )
