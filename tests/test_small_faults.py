# SPDX-License-Identifier: GPL-2.0-only
"""Smaller faults, each on the real command line: `--json -`, a closed output pipe, a full disk under
--json, and --accel kvm where KVM is known not to boot."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from formats import valid_json

from uffdprobe.exitcodes import Exit


def _uffdprobe(*argv, env=None, cwd="/", timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.mark.reliability("`uffdprobe run --json -`", "the JSON on stdout (the table on stderr), no file named '-'")
def test_json_dash_is_stdout(tmp_path, kf):
    proc = _uffdprobe("run", "cow-leak", "--json", "-", cwd=tmp_path)
    assert proc.returncode == Exit.OK, proc.stderr
    results = valid_json(json.loads(proc.stdout), "results")["results"]
    assert {r["scenario"] for r in results} == {"cow-leak"}
    assert "summary:" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_json_dash_with_ktap_is_refused(tmp_path):
    proc = _uffdprobe("run", "cow-leak", "--json", "-", "--ktap", "-", cwd=tmp_path)
    assert proc.returncode == Exit.USAGE
    [line] = proc.stderr.strip().splitlines()
    assert "both want stdout" in line


@pytest.mark.reliability(
    "`uffdprobe list | head -1` (the reader closes the pipe)", "no BrokenPipeError traceback, stops quietly"
)
def test_a_closed_pipe_is_no_traceback():
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f"set -o pipefail; {sys.executable} -m uffdprobe list --all | head -1; echo status=${{PIPESTATUS[0]}}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr, shell.stderr
    assert shell.stderr == ""
    assert shell.stdout.splitlines()[0].strip()  # the first line came through
    # whether the writer meets head's closed pipe at all depends on timing (the list may fit in the pipe)
    assert shell.stdout.splitlines()[-1] in ("status=0", f"status={int(Exit.BROKEN_PIPE)}")
    # a reader gone before the first write: always the closed pipe, and a quiet stop with 141 (128 + SIGPIPE),
    # as the shell reports for `yes | head -1`, never 130 (Ctrl-C's)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "uffdprobe", "list", "--all"],
            stdout=write_end,
            capture_output=False,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == Exit.BROKEN_PIPE == 141 and proc.stderr == "", proc.stderr
    yes = subprocess.run(
        ["bash", "-c", "yes | head -1 >/dev/null; echo ${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=60
    )
    assert yes.stdout.strip() == str(int(Exit.BROKEN_PIPE))  # the convention it follows


@pytest.fixture
def full_tmpfs():
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    where = Path(tempfile.mkdtemp(prefix="uffdprobe-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=True, timeout=30)
    try:
        with open(where / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    yield where
    subprocess.run(["umount", str(where)], check=True, timeout=30)
    where.rmdir()


@pytest.mark.reliability(
    "--json FILE on a full disk unrelated to the cache",
    "one line naming FILE (not XDG_CACHE_HOME), exit 6, no partial FILE or temp file",
)
def test_full_disk_names_the_output_path(full_tmpfs, kf):
    out = full_tmpfs / "results.json"
    proc = _uffdprobe("run", "cow-leak", "--json", str(out))
    assert proc.returncode == Exit.NO_SPACE, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("uffdprobe:")]
    assert str(out) in line and "XDG_CACHE_HOME" not in line
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in full_tmpfs.iterdir()) == ["filler"]


@pytest.mark.reliability(
    "--accel kvm where the cached probe found KVM does not boot",
    "a setup error at once (one line, exit 2), not a boot that runs into VM_TIMEOUT",
)
def test_accel_kvm_known_broken_is_refused_at_once(tmp_path):
    from uffdprobe.kbuild import build as kbuild
    from uffdprobe.vm import accel

    if not accel.kvm_device_usable():
        pytest.skip("/dev/kvm is not usable here (a different refusal)")
    kernels = kbuild.list_kernels()
    if not kernels:
        pytest.skip("no kernel in the cache")
    answer = {
        "accel": "tcg",
        "reason": "KVM probe boot: VM_TIMEOUT: no console output",
        "seconds": 20.0,
        "probed_at": "2026-01-01T00:00:00",
    }
    (tmp_path / "uffdprobe").mkdir()
    (tmp_path / "uffdprobe" / "accel.json").write_text(json.dumps({accel.host_key(): answer}))
    started = time.monotonic()
    proc = _uffdprobe(
        "run", "--kernel", str(kernels[0].bzimage), "--accel", "kvm", "cow-leak", env={"XDG_CACHE_HOME": str(tmp_path)}
    )
    took = time.monotonic() - started
    assert proc.returncode == Exit.USAGE, proc.stderr
    said = [x for x in proc.stderr.splitlines() if not x.startswith("[vm] ")]
    assert len(said) == 1 and "KVM does not boot here" in said[0] and "--accel tcg" in said[0], said
    assert not list((tmp_path / "uffdprobe").glob("runs/*"))
    print(f"refused in {took:.1f}s")
