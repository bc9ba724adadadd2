# SPDX-License-Identifier: GPL-2.0-only
"""Write a gzip-compressed newc cpio archive, the format the kernel unpacks as initramfs."""

import gzip
import stat

TRAILER = "TRAILER!!!"


class CpioWriter:
    """Collect directories, files and device nodes, then write them in newc format."""

    def __init__(self):
        self.entries = []  # (name, mode, data, rdev_major, rdev_minor)

    def add_dir(self, name: str, perm: int = 0o755):
        """Add a directory."""
        self.entries.append((name, stat.S_IFDIR | perm, b"", 0, 0))

    def add_file(self, name: str, data: bytes, perm: int = 0o644):
        """Add a regular file with the given content."""
        self.entries.append((name, stat.S_IFREG | perm, data, 0, 0))

    def add_chardev(self, name: str, major: int, minor: int, perm: int = 0o600):
        """Add a character device node (no root needed: the kernel creates it while unpacking)."""
        self.entries.append((name, stat.S_IFCHR | perm, b"", major, minor))

    def to_bytes(self) -> bytes:
        """The whole archive, gzip-compressed, with fixed timestamps so equal input gives equal output."""
        out = bytearray()
        for ino, (name, mode, data, major, minor) in enumerate(self.entries + [(TRAILER, 0, b"", 0, 0)], 1):
            out += _header(ino, name, mode, data, major, minor)
            out += data + _pad(len(data))
        return gzip.compress(bytes(out), compresslevel=6, mtime=0)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino, name, mode, data, major, minor) -> bytes:
    raw_name = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(raw_name), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + raw_name
    return head + _pad(len(head))
