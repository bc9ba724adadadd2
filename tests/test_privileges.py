"""Without uffd permission nothing runs, nothing PASSes, and the user is told what to do."""
import json
import os
import pathlib
import shutil
import tempfile
import subprocess
import sys

import pytest

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def as_nobody():
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    if open("/proc/sys/vm/unprivileged_userfaultfd").read().strip() != "0":
        pytest.skip("vm.unprivileged_userfaultfd=1 here: an unprivileged user may use uffd")
    probe = subprocess.run(NOBODY + [sys.executable, "-c", "import uffdprobe"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"this interpreter is not usable by nobody: {probe.stderr.decode()[-200:]}")
    work = tempfile.mkdtemp(prefix="uffdprobe-nobody-")
    os.chmod(work, 0o777)
    yield pathlib.Path(work)
    shutil.rmtree(work)


@pytest.mark.reliability("not root, vm.unprivileged_userfaultfd=0, no access to /dev/userfaultfd",
                         "every scenario needing uffd SKIP with the reason, one stderr line, exit 8, results "
                         "written")
def test_unprivileged_run_skips_everything_with_the_reason(as_nobody):
    out = as_nobody / "r.json"
    proc = subprocess.run(NOBODY + [sys.executable, "-m", "uffdprobe", "run", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=as_nobody)
    assert proc.returncode == 8, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uffdprobe:")]
    assert len(errors) == 1 and "vm.unprivileged_userfaultfd" in errors[0]
    results = json.loads(out.read_text())
    skipped = [r for r in results if r["scenario"] != "cow-leak"]  # the one scenario that needs no uffd
    assert skipped and all(r["verdict"] == "SKIP" for r in skipped)
    assert all("Permission denied" in r["reason"] or "Operation not permitted" in r["reason"] for r in skipped)
    assert {r["verdict"] for r in results if r["scenario"] == "cow-leak"} == {"PASS"}


def test_unprivileged_features_says_why(as_nobody):
    proc = subprocess.run(NOBODY + [sys.executable, "-m", "uffdprobe", "features"],
                          capture_output=True, text=True, timeout=60, cwd=as_nobody)
    assert proc.returncode == 0
    assert "userfaultfd: unavailable" in proc.stdout and "/dev/userfaultfd: no access" in proc.stdout
