# SPDX-License-Identifier: GPL-2.0-only
"""VM runner pieces that need no QEMU: cpio writer, module order, console parsing, outcome rules."""

import gzip
import subprocess

import pytest

from uffdprobe.vm import console, outcome
from uffdprobe.vm.cpio import CpioWriter
from uffdprobe.vm.kernel import header_version
from uffdprobe.vm.modules import ModuleTree
from uffdprobe.vm.qemu import QemuRun
from uffdprobe.vm.resolve import read_kconfig

PANIC_LOG = """\
[    1.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP
uffdprobe-guest: init reached (uptime 3.2s); running: sh -c boom
hello from the guest
[    6.128548] sysrq: Trigger a crash
[    6.128856] Kernel panic - not syncing: sysrq triggered crash
[    6.129335] CPU: 1 PID: 116 Comm: sh Not tainted 6.1.0-56-cloud-amd64 #1
[    6.130775]  sysrq_handle_crash+0x16/0x20
[    6.130775] Kernel Offset: 0x3600000 from 0xffffffff81000000
"""


def test_cpio_archive_lists_with_the_cpio_tool(tmp_path):
    archive = CpioWriter()
    archive.add_dir("bin")
    archive.add_file("bin/hello", b"odd length!", 0o755)
    archive.add_chardev("console", 5, 1)
    raw = gzip.decompress(archive.to_bytes())
    assert archive.to_bytes() == archive.to_bytes()  # reproducible
    listing = subprocess.run(["cpio", "-itv"], input=raw, capture_output=True, timeout=30).stdout.decode()
    names = [line.split()[-1] for line in listing.splitlines()]
    assert names == ["bin", "bin/hello", "console"]
    assert listing.splitlines()[2].startswith("crw")


def test_module_load_order_puts_dependencies_first_and_skips_builtins(tmp_path):
    moddir = tmp_path / "lib" / "modules" / "6.1.0-test"
    moddir.mkdir(parents=True)
    (moddir / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/drivers/virtio/virtio_ring.ko.xz:\n"
    )
    (moddir / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    tree = ModuleTree(moddir)
    order = tree.load_order(["virtio_pci", "9pnet_virtio", "9p", "not_there"])
    assert order.index("9pnet") < order.index("9pnet_virtio") < order.index("9p")
    assert order.index("virtio_ring") < order.index("9pnet_virtio")
    assert order.index("netfs") < order.index("9p")
    assert "virtio_pci" not in order and "not_there" not in order
    assert tree.has("virtio_pci") and tree.has("virtio_ring") and not tree.has("virtiofs")


def test_header_version_reads_the_setup_header():
    head = bytearray(0x400)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x100).to_bytes(2, "little")
    text = b"6.1.192 #4\0"
    head[0x300 : 0x300 + len(text)] = text
    assert header_version(bytes(head)) == "6.1.192 #4"
    assert header_version(b"\0" * 0x400) == ""


def test_console_parsing():
    assert console.has_panic(PANIC_LOG)
    assert console.panic_reason(PANIC_LOG) == "Kernel panic - not syncing: sysrq triggered crash"
    lines = console.panic_lines(PANIC_LOG)
    assert lines[0].endswith("sysrq: Trigger a crash") and lines[-1].endswith("0xffffffff81000000")
    assert console.linux_version(PANIC_LOG).startswith("6.1.0-56-cloud-amd64")
    assert console.guest_output(PANIC_LOG) == ["hello from the guest"]


@pytest.mark.parametrize(
    "text,limit,files,expected",
    [
        (PANIC_LOG, "", {}, "PANIC"),
        (PANIC_LOG.replace("uffdprobe-guest: init reached", "x"), "", {}, "BOOT_FAIL"),
        ("", "", {}, "BOOT_FAIL"),
        ("uffdprobe-guest: init failed: cannot mount /proc\n", "", {}, "BOOT_FAIL"),
        ("uffdprobe-guest: init reached\n", "silence", {}, "VM_TIMEOUT"),
        ("uffdprobe-guest: init reached\n", "overall", {}, "VM_TIMEOUT"),
        ("uffdprobe-guest: init reached\n", "", {"exit_status": "124\n", "command_timed_out": ""}, "VM_TIMEOUT"),
        ("uffdprobe-guest: init reached\nuffdprobe-guest: command done status=3\n", "", {"exit_status": "3\n"}, "OK"),
        ("uffdprobe-guest: init reached\n", "", {}, "PANIC"),  # died silently: triple fault
    ],
)
def test_outcome_rules(tmp_path, text, limit, files, expected):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    run = QemuRun(returncode=0, limit_hit=limit)
    verdict = outcome.classify(text, "", run, tmp_path, {"timeout": 300, "silence_timeout": 120})
    assert verdict.outcome == expected, verdict.reason
    if expected == "OK":
        assert verdict.exit_status == 3


def test_outcome_of_qemu_killed_or_stopped_and_of_a_lost_channel(tmp_path):
    limits = {"timeout": 300, "silence_timeout": 120}
    reached = "uffdprobe-guest: init reached\n"
    killed = outcome.classify(reached, "", QemuRun(returncode=-9, launched_at=1, ended_at=5), tmp_path, limits)
    assert killed.outcome == "VM_KILLED" and "signal 9 (SIGKILL)" in killed.reason
    # uffdprobe's own stop after a limit is not a kill from outside
    stopped = QemuRun(returncode=-15, limit_hit="silence", stopped=True)
    assert outcome.classify(reached, "", stopped, tmp_path, limits).outcome == "VM_TIMEOUT"
    lost = outcome.classify(
        reached + "uffdprobe-guest: command done status=14\n", "", QemuRun(returncode=0), tmp_path, limits
    )
    assert (lost.outcome, lost.exit_status) == ("CHANNEL_LOST", 14)


def test_read_kconfig(tmp_path):
    config = tmp_path / ".config"
    config.write_text("CONFIG_9P_FS=y\n# CONFIG_VIRTIO_FS is not set\nCONFIG_LOCALVERSION=\"-x\"\n")
    assert read_kconfig(config) == {"CONFIG_9P_FS": "y", "CONFIG_LOCALVERSION": "-x"}


def test_apt_cache_finds_a_debian_cloud_kernel():
    """apt-cache takes POSIX regexes (no \\d): the cloud kernel pattern must match there for real."""
    import shutil
    import subprocess
    from uffdprobe.vm import distro

    if not shutil.which("apt-cache"):
        pytest.skip("no apt-cache here")
    listed = subprocess.run(["apt-cache", "policy"], capture_output=True, text=True, timeout=60).stdout
    if "bookworm" not in listed:
        pytest.skip("apt has no Debian 12 package lists (apt-get update)")
    assert distro.newest_package(distro.CLOUD_61_PATTERN).endswith("-cloud-amd64-unsigned")
