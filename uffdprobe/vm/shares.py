# SPDX-License-Identifier: GPL-2.0-only
"""The two shares a guest sees: host root (read-only) and the results channel (writable)."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from uffdprobe.osutil import children
from uffdprobe.osutil.procs import owner_gone
from . import leftovers
from .errors import VmSetupError
from .resolve import VIRTIOFSD

ROOT_TAG = "/dev/root"  # 6.1 mounts a 9p root only under this name
CHANNEL_TAG = "uffdprobe-channel"
MSIZE = 512 * 1024


def ninep_args(channel_dir: Path) -> list:
    """QEMU arguments exporting / read-only and channel_dir writable over virtio-9p."""
    return [
        "-fsdev",
        "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device",
        f"virtio-9p-pci,fsdev=hostroot,mount_tag={ROOT_TAG}",
        "-fsdev",
        f"local,id=channel,path={channel_dir},security_model=none",
        "-device",
        f"virtio-9p-pci,fsdev=channel,mount_tag={CHANNEL_TAG}",
    ]


SOCK_PREFIX = "uffdprobe-vfs-"


def sweep_dead_socket_dirs() -> list:
    """Remove the socket folders (uffdprobe-vfs-PID-*) that a SIGKILLed run left in the temp dir, and
    kill a virtiofsd still serving one (its parent-death signal should have: this is the fallback)."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{SOCK_PREFIX}*-*"):
        pid = path.name[len(SOCK_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and owner_gone(int(pid)):
            for proc in leftovers.vm_processes(mentioning=str(path)):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                    proc.wait(5)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class VirtiofsShares:
    """Two virtiofsd daemons (root read-only through a private bind mount, channel writable)."""

    def __init__(self, run_dir: Path, channel_dir: Path, memory_mb: int):
        self.run_dir = Path(run_dir)
        self.channel_dir = Path(channel_dir)
        self.memory_mb = memory_mb
        self.procs = []
        self.sock_dir = None

    def start(self, timeout: float = 10.0) -> list:
        """Start both daemons, wait for their sockets, and return the QEMU arguments."""
        binary = VIRTIOFSD if Path(VIRTIOFSD).exists() else shutil.which("virtiofsd")
        mnt = self.run_dir / "hostroot-ro"
        mnt.mkdir(exist_ok=True)
        # Unix socket paths are limited to 108 bytes: keep them in a short private directory.
        sweep_dead_socket_dirs()
        self.sock_dir = Path(tempfile.mkdtemp(prefix=f"{SOCK_PREFIX}{os.getpid()}-"))
        root_sock, chan_sock = self.sock_dir / "root.sock", self.sock_dir / "channel.sock"
        # The bind mount exists only in the daemon's own mount namespace; the host never sees it.
        script = (
            'mount --bind / "$1" && mount -o remount,bind,ro "$1" && '
            'exec "$3" --socket-path="$2" -o source="$1" -o cache=always -o sandbox=namespace'
        )
        self._start(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
                str(mnt),
                str(root_sock),
                binary,
            ],
            "virtiofsd-root.log",
        )
        self._start(
            [
                binary,
                f"--socket-path={chan_sock}",
                "-o",
                f"source={self.channel_dir}",
                "-o",
                "cache=none",
                "-o",
                "sandbox=namespace",
            ],
            "virtiofsd-channel.log",
        )
        deadline = time.monotonic() + timeout
        while not (root_sock.exists() and chan_sock.exists()):
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                raise VmSetupError(f"virtiofsd did not start: see {self.run_dir}/virtiofsd-*.log")
            time.sleep(0.05)
        mem = self.memory_mb
        return [
            "-object",
            f"memory-backend-memfd,id=mem,size={mem}M,share=on",
            "-machine",
            "memory-backend=mem",
            "-chardev",
            f"socket,id=vfsroot,path={root_sock}",
            "-device",
            f"vhost-user-fs-pci,chardev=vfsroot,tag={ROOT_TAG}",
            "-chardev",
            f"socket,id=vfschan,path={chan_sock}",
            "-device",
            f"vhost-user-fs-pci,chardev=vfschan,tag={CHANNEL_TAG}",
        ]

    def _start(self, argv, log_name):
        with children.signals_blocked(), open(self.run_dir / log_name, "wb") as log:
            self.procs.append(children.spawn(argv, stdout=log, stderr=subprocess.STDOUT))

    def stop(self):
        """Kill and reap both daemons."""
        for proc in self.procs:
            children.stop(proc, grace=1.0)
        if self.sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        try:
            (self.run_dir / "hostroot-ro").rmdir()
        except OSError:
            pass
