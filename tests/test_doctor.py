# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe doctor` on this machine and on the same machine with things really taken away: a PATH without
the tools, an empty cache, an unprivileged user."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _doctor(*args, env=None, prefix=(), cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(prefix) + [sys.executable, "-m", "uffdprobe", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def test_doctor_says_ready_and_names_every_check():
    proc = _doctor("--json", "-")
    report = json.loads(proc.stdout)
    failed = [c for c in report["checks"] if c["needed"] and not c["ok"]]
    assert proc.returncode == (0 if not failed else 2), proc.stdout
    assert report["ready"] == (not failed), failed
    names = {c["name"] for c in report["checks"]}
    assert {
        "userfaultfd",
        "qemu",
        "static busybox",
        "acceleration",
        "transparent hugepages",
        "cache",
        "kernel stock",
        "kernel build toolchain",
    } <= names
    assert not failed, f"this machine runs the main job, yet doctor says: {failed}"


def test_doctor_gives_the_apt_line_when_tools_are_missing(tmp_path):
    """Only python on PATH and an empty cache: QEMU and the build toolchain are missing, the kernels
    cannot be built, so the main job cannot run (exit 2) and the fix is one apt-get line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python3")
    env = dict(os.environ, PATH=str(bin_dir), XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = _doctor(env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("MISSING  qemu:") for line in lines), proc.stdout
    assert any(line.startswith("MISSING  kernel stock:") for line in lines), proc.stdout
    needed = next(line for line in lines if line.startswith("needed by the main job"))
    assert {"qemu-system-x86", "gcc", "make", "flex", "bison", "bc"} <= set(
        needed.split("apt-get install -y")[1].split()
    )
    assert "not ready" in lines[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_doctor_tells_an_unprivileged_user_how_to_get_userfaultfd():
    unpriv = Path("/proc/sys/vm/unprivileged_userfaultfd").read_text().strip()
    dev_ok = os.stat("/dev/userfaultfd").st_mode & 0o006 == 0o006 if os.path.exists("/dev/userfaultfd") else False
    if unpriv != "0" or dev_ok:
        pytest.skip(f"an unprivileged user has userfaultfd here (vm.unprivileged_userfaultfd={unpriv})")
    work = Path(tempfile.mkdtemp(prefix="uffdprobe-doctor-", dir="/var/tmp"))
    try:
        os.chmod(work, 0o777)
        env = dict(os.environ, HOME=str(work), XDG_CACHE_HOME=str(work / "cache"))
        proc = _doctor("--json", "-", env=env, prefix=NOBODY, cwd=work)
        if proc.returncode not in (0, 2) or not proc.stdout.startswith("{"):
            pytest.skip(f"this interpreter is not usable by nobody: {proc.stderr[-200:]}")
        checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    finally:
        shutil.rmtree(work)
    uffd = checks["userfaultfd"]
    assert not uffd["ok"] and uffd["needed"] and proc.returncode == 2
    assert "vm.unprivileged_userfaultfd=1" in uffd["fix"] and "/dev/userfaultfd" in uffd["fix"]
