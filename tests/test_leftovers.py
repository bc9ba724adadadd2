# SPDX-License-Identifier: GPL-2.0-only
"""Children die with uffdprobe and temporary folders go on every exit path (SIGKILL aside); what a
SIGKILLed run left, the next run sweeps.

Real signals to a real `uffdprobe run --kernel DEB` while dpkg-deb unpacks it or the guest boots,
and real matrices, looking afterwards at the process table, the temp dir and the cache.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from uffdprobe.exitcodes import Exit
from uffdprobe.vm.paths import cache_root


def _deb() -> Path:
    """Debian's cloud kernel package, fetched with apt-get download into the cache if it is not there yet."""
    from uffdprobe.vm import distro
    from uffdprobe.vm.errors import VmSetupError

    try:
        return distro.debian_cloud_kernel(cache_root() / "debs")
    except (VmSetupError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot get a Debian cloud kernel package: {exc}")


def _procs(name: str, mentioning: str) -> list:
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if (
                name in (p.info["name"] or "")
                and mentioning in " ".join(p.info["cmdline"] or [])
                and p.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


def _gone(name: str, mentioning: str, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while _procs(name, mentioning):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _start(*argv, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uffdprobe", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def _wait_for(condition, proc: subprocess.Popen, what: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert proc.poll() is None, f"uffdprobe ended before {what}: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def _end(proc: subprocess.Popen) -> str:
    try:
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.reliability(
    "Ctrl-C or SIGKILL while dpkg-deb unpacks a kernel .deb",
    "dpkg-deb dies with uffdprobe; Ctrl-C: exit 130 and the partial unpack removed; "
    "SIGKILL: the next unpack removes the dead run's partial tree",
)
def test_dpkg_deb_dies_with_uffdprobe(tmp_path, sig):
    deb = _deb()
    unpacks = tmp_path / "uffdprobe" / "debian-kernels"
    proc = _start("run", "--kernel", deb, "cow-leak", env={"XDG_CACHE_HOME": str(tmp_path)})
    _wait_for(lambda: _procs("dpkg-deb", str(unpacks)), proc, "dpkg-deb unpacking")
    os.kill(proc.pid, sig)
    err = _end(proc)
    assert _gone("dpkg-deb", str(unpacks)), "dpkg-deb outlived uffdprobe"
    partial = list(unpacks.glob("*.tmp*"))
    if sig == signal.SIGINT:
        assert proc.returncode == Exit.INTERRUPTED, err[-2000:]
        assert "Traceback" not in err
        assert partial == []
        return
    assert [p.name.rsplit(".tmp", 1)[1] for p in partial] == [str(proc.pid)]  # SIGKILL: nothing could run
    code = f"from uffdprobe.vm import distro; distro.unpack_kernel_deb({str(deb)!r}, {str(unpacks)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert not [p for p in partial if p.exists()], "the next unpack did not sweep the dead run's partial tree"
    assert list(unpacks.glob("*.tmp*")) == []


@pytest.mark.vm
@pytest.mark.timeout(600)
@pytest.mark.reliability(
    "SIGKILL of a .deb run (virtiofs) while the guest boots",
    "QEMU and virtiofsd die with it; the next run removes the dead run's "
    "/tmp/uffdprobe-vfs-PID-* socket folder and leaves none of its own",
)
def test_a_sigkilled_runs_socket_folder_is_swept(tmp_path):
    deb = _deb()
    temp = Path(tempfile.gettempdir())
    proc = _start("run", "--kernel", deb, "--memory", "anon-4k", "cow-leak")
    mine = lambda: list(temp.glob(f"uffdprobe-vfs-{proc.pid}-*"))  # noqa: E731
    _wait_for(mine, proc, "the virtiofs socket folder", within=300)
    left = mine()
    os.kill(proc.pid, signal.SIGKILL)
    _end(proc)
    assert _gone("virtiofsd", str(left[0])) and _gone("qemu-system", str(left[0]))
    assert all(p.exists() for p in left)  # SIGKILL aside: nothing could remove it
    again = _start("run", "--kernel", deb, "--memory", "anon-4k", "cow-leak")
    err = _end(again)
    assert again.returncode == Exit.OK, err[-2000:]
    assert not [p for p in left if p.exists()]
    assert list(temp.glob(f"uffdprobe-vfs-{again.pid}-*")) == []


@pytest.mark.reliability(
    "a matrix, finished or refused",
    "no /tmp/uffdprobe-matrix-* folder: the logs live in "
    "the cache's matrix/ folder, made only once the kernels are ready",
)
def test_a_matrix_leaves_no_temp_folder(tmp_path):
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("uffdprobe-matrix-*"))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            "host",
            "--kernel",
            str(tmp_path / "no-such-bzImage"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert refused.returncode == Exit.USAGE, refused.stderr
    assert not (tmp_path / "uffdprobe" / "matrix").exists()
    done = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "matrix", "--kernel", "host", "--scenario", "cow-leak"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == Exit.OK, done.stderr
    [work] = list((tmp_path / "uffdprobe" / "matrix").iterdir())
    assert (work / "matrix.json").exists() and str(work) in done.stderr
    assert set(temp.glob("uffdprobe-matrix-*")) <= before
