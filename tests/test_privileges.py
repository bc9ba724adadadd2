# SPDX-License-Identifier: GPL-2.0-only
"""Without uffd permission nothing runs, nothing PASSes, and the user is told what to do."""

import json
import os
import pathlib
import shutil
import tempfile

import pytest


@pytest.fixture
def as_nobody(nobody_python):
    if open("/proc/sys/vm/unprivileged_userfaultfd").read().strip() != "0":
        pytest.skip("vm.unprivileged_userfaultfd=1 here: an unprivileged user may use uffd")
    work = tempfile.mkdtemp(prefix="uffdprobe-nobody-")
    os.chmod(work, 0o777)
    yield pathlib.Path(work)
    shutil.rmtree(work)


@pytest.mark.reliability(
    "not root, vm.unprivileged_userfaultfd=0, no access to /dev/userfaultfd",
    "every scenario needing uffd SKIP with the reason, one stderr line, exit 8, results written",
)
def test_unprivileged_run_skips_everything_with_the_reason(as_nobody, nobody_python):
    out = as_nobody / "r.json"
    proc = nobody_python.run(["run", "--json", str(out)], timeout=120, cwd=as_nobody, env={"HOME": str(as_nobody)})
    assert proc.returncode == 8, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uffdprobe:")]
    assert len(errors) == 1 and "vm.unprivileged_userfaultfd" in errors[0]
    results = json.loads(out.read_text())["results"]
    from uffdprobe.scenarios.registry import SCENARIOS

    no_uffd = {name for name, s in SCENARIOS.items() if "uffd" not in s.needs}  # cow-leak and its reverse
    skipped = [r for r in results if r["scenario"] not in no_uffd]
    assert skipped and all(r["verdict"] == "SKIP" for r in skipped)
    assert all("Permission denied" in r["reason"] or "Operation not permitted" in r["reason"] for r in skipped)
    from uffdprobe.scenarios.memkinds import unavailable

    mine = [r for r in results if r["scenario"] in no_uffd]
    assert mine
    for r in mine:  # they run for real, but on a kind this host lacks (no swap, no huge pages): SKIP, said why
        why = unavailable(r["memory"])
        assert (r["verdict"], r["reason"]) == ("SKIP", why) if why else r["verdict"] == "PASS", r


def test_unprivileged_features_says_why(as_nobody, nobody_python):
    proc = nobody_python.run(["features"], timeout=60, cwd=as_nobody, env={"HOME": str(as_nobody)})
    assert proc.returncode == 0
    assert "userfaultfd: unavailable" in proc.stdout and "/dev/userfaultfd: no access" in proc.stdout
