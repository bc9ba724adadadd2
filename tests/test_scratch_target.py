# SPDX-License-Identifier: GPL-2.0-only
"""An O_DIRECT target that holds someone's data is refused before a byte is written to it.

Real loop devices over real images: an ext4 made by mkfs.ext4, a dos partition table made by
sfdisk, the same ext4 mounted. Each run is the real command line in a subprocess; afterwards the
image is byte-for-byte what it was, e2fsck finds the filesystem clean, and the loop device is gone.
"""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from uffdprobe.exitcodes import Exit

IMAGE_MB = 32


def _tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/sbin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)
    if os.geteuid() != 0 or not path:
        pytest.skip(f"needs root and {name}")
    return path


@contextlib.contextmanager
def _loop(image) -> str:
    dev = subprocess.run(
        [_tool("losetup"), "--find", "--show", str(image)], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run([_tool("losetup"), "--detach", dev], capture_output=True, timeout=30)


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _image(tmp_path, kind: str):
    image = tmp_path / f"{kind}.img"
    with open(image, "wb") as f:
        f.truncate(IMAGE_MB << 20)
    if kind == "ext4":
        subprocess.run([_tool("mkfs.ext4"), "-q", "-F", "-L", "userdata", str(image)], check=True, timeout=60)
    elif kind == "dos":  # one Linux partition from sector 2048 to the end, as fdisk writes it
        sectors = (IMAGE_MB << 11) - 2048
        entry = (
            bytes([0, 0x20, 0x21, 0, 0x83, 0xFE, 0xFF, 0xFF])
            + (2048).to_bytes(4, "little")
            + sectors.to_bytes(4, "little")
        )
        with open(image, "r+b") as f:
            f.seek(440)
            f.write(os.urandom(4) + b"\0\0" + entry + bytes(48) + b"\x55\xaa")
    elif kind == "squashfs+iso9660":  # the shape blkid -p calls ambivalent (exit 8)
        with open(image, "r+b") as f:
            f.write(_squashfs_superblock())
            f.seek(0x8000)  # an iso9660 primary volume descriptor, then the set terminator
            f.write(b"\x01CD001\x01" + bytes(32) + b"TWOSIGNATURES".ljust(32))
            f.seek(0x8800)
            f.write(b"\xffCD001\x01")
    return image


def _squashfs_superblock() -> bytes:
    """A squashfs 4.0 superblock: magic, one inode, 128 KiB blocks, gzip, version 4.0."""
    import struct

    head = b"hsqs" + struct.pack("<IIIIHHHHHH", 1, 0, 131072, 0, 1, 17, 0, 0, 4, 0)
    return head + bytes(8) + struct.pack("<Q", 4096) + bytes(48)


def _uffdprobe(*argv, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def _attached(image) -> str:
    return subprocess.run(
        [_tool("losetup"), "--associated", str(image)], capture_output=True, text=True, timeout=30
    ).stdout.strip()


def _refused_untouched(proc, image, before: str, words: list) -> None:
    assert proc.returncode == Exit.USAGE, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in line, line
    assert _digest(image) == before


@pytest.mark.reliability(
    "--odirect-target names a block device holding an ext4 filesystem",
    "refused before any write: one line naming the device and 'ext4', exit 2, the "
    "filesystem intact (same bytes, e2fsck clean)",
)
def test_a_device_with_ext4_is_refused_and_left_intact(tmp_path):
    image = _image(tmp_path, "ext4")
    before = _digest(image)
    with _loop(image) as dev:
        proc = _uffdprobe("run", "wp-gup-odirect", "--odirect-target", dev, "--json", str(tmp_path / "r.json"))
        _refused_untouched(proc, image, before, [dev, "ext4", "refusing"])
        assert subprocess.run([_tool("e2fsck"), "-fn", dev], capture_output=True, timeout=60).returncode == 0
    assert not (tmp_path / "r.json").exists()
    assert _attached(image) == ""


@pytest.mark.reliability(
    "UFFDPROBE_SCRATCH_DEV names a block device holding an ext4 filesystem",
    "refused before any write: one line naming the variable and 'ext4', exit 2, data intact",
)
def test_a_scratch_variable_naming_a_filesystem_is_refused(tmp_path):
    image = _image(tmp_path, "ext4")
    before = _digest(image)
    with _loop(image) as dev:
        proc = _uffdprobe("run", "wp-gup-odirect", env={"UFFDPROBE_SCRATCH_DEV": dev})
        _refused_untouched(proc, image, before, ["UFFDPROBE_SCRATCH_DEV", dev, "ext4"])


@pytest.mark.reliability(
    "--odirect-target names a disk with a partition table",
    "refused before any write: one line naming 'partition table', exit 2, table intact",
)
def test_a_partitioned_device_is_refused(tmp_path):
    image = _image(tmp_path, "dos")
    before = _digest(image)
    with _loop(image) as dev:
        proc = _uffdprobe("run", "wp-gup-odirect", "--odirect-target", dev)
        _refused_untouched(proc, image, before, [dev, "dos partition table"])


@pytest.mark.reliability(
    "--odirect-target names a mounted block device",
    "refused before any write: one line saying where it is mounted, exit 2, data intact",
)
def test_a_mounted_device_is_refused(tmp_path):
    image = _image(tmp_path, "ext4")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with _loop(image) as dev:
        subprocess.run([_tool("mount"), dev, str(mnt)], check=True, timeout=60)
        try:
            (mnt / "precious").write_text("user data\n")
            proc = _uffdprobe("run", "wp-gup-odirect", "--odirect-target", dev)
            assert proc.returncode == Exit.USAGE, proc.stderr
            [line] = proc.stderr.strip().splitlines()
            assert "mounted at" in line and str(mnt) in line
        finally:
            subprocess.run([_tool("umount"), str(mnt)], check=True, timeout=60)
        assert subprocess.run([_tool("e2fsck"), "-fn", dev], capture_output=True, timeout=60).returncode == 0
    assert _attached(image) == ""


@pytest.mark.reliability(
    "--odirect-target names a loop device with two signatures (squashfs at 0, iso9660 at "
    "0x8000: blkid -p exits 8, ambivalent)",
    "refused before any write: one line naming both signatures, exit 2, image byte-identical",
)
def test_a_device_with_two_signatures_is_refused(tmp_path):
    image = _image(tmp_path, "squashfs+iso9660")
    before = _digest(image)
    with _loop(image) as dev:
        assert subprocess.run([_tool("blkid"), "-p", dev], capture_output=True, timeout=60).returncode == 8
        proc = _uffdprobe("run", "wp-gup-odirect", "--odirect-target", dev, "--json", str(tmp_path / "r.json"))
        _refused_untouched(proc, image, before, [dev, "squashfs at 0x0", "iso9660", "ambivalent"])
    assert not (tmp_path / "r.json").exists()
    assert _attached(image) == ""


@pytest.mark.reliability(
    "--odirect-target names a blank-looking device while the signature probe cannot run "
    "(blkid and wipefs missing from PATH and /sbin)",
    "refused: one line saying it cannot be shown blank, exit 2, nothing written",
)
def test_a_device_that_cannot_be_probed_is_refused(tmp_path):
    image = _image(tmp_path, "blank")
    before = _digest(image)
    bin_dir = tmp_path / "bin"  # python and losetup reachable, util-linux's probes not
    bin_dir.mkdir()
    with _loop(image) as dev:
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "--",
                "sh",
                "-c",
                "mount -t tmpfs none /sbin && mount -t tmpfs none /usr/sbin && "
                f'exec env PATH={bin_dir} "{sys.executable}" -m uffdprobe run wp-gup-odirect '
                f"--odirect-target {dev}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(tmp_path),
        )
        _refused_untouched(proc, image, before, [dev, "cannot be shown blank"])


def test_a_blank_device_is_used(tmp_path, kf):
    """The check refuses data, not devices: a blank loop device still takes the O_DIRECT scenario."""
    image = _image(tmp_path, "blank")
    with _loop(image) as dev:
        proc = _uffdprobe(
            "run", "wp-gup-odirect", "--memory", "anon-4k", "--odirect-target", dev, "--json", str(tmp_path / "r.json")
        )
    assert proc.returncode == Exit.OK, proc.stderr
    [res] = json.loads((tmp_path / "r.json").read_text())["results"]
    assert res["verdict"] == "PASS" and res["evidence"]["odirect_target"] == dev


@pytest.mark.reliability(
    "--odirect-target names a regular file holding data",
    "the file is never written: a fresh file of our own beside it, removed afterwards",
)
def test_a_file_target_gets_a_fresh_file_of_our_own(tmp_path, kf):
    folder = tmp_path / "target"
    folder.mkdir()
    precious = folder / "precious.db"
    precious.write_bytes(os.urandom(1 << 16))
    before = _digest(precious)
    proc = _uffdprobe(
        "run",
        "wp-gup-odirect",
        "--memory",
        "anon-4k",
        "--odirect-target",
        str(precious),
        "--json",
        str(tmp_path / "r.json"),
    )
    if proc.returncode == Exit.USAGE and "O_DIRECT writes fail" in proc.stderr:
        pytest.skip(f"{tmp_path} does not take O_DIRECT")
    assert proc.returncode == Exit.OK, proc.stderr
    assert _digest(precious) == before
    assert sorted(os.listdir(folder)) == ["precious.db"]
