# SPDX-License-Identifier: GPL-2.0-only
"""A guest's run scans the installed distributions for scenario entry points only when its host found
some (issue 30): the scan (importlib.metadata, every distribution's metadata over 9p) was the costliest
import of a guest's first verdict. The host says "none" in the guest's environment; with a plugin
installed it says nothing, and the guest finds and runs the plugin's scenario as before."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_user_scenarios import USER_FILE, fake_distribution, results_of  # tests/ is on sys.path

from uffdprobe.scenarios.sources import ENTRY_POINTS_ENV

ARGV = """
import json, sys
from uffdprobe.run.guest import guest_argv
from uffdprobe.run.request import RunRequest, Workload
print(json.dumps(guest_argv(RunRequest(workload=Workload(scenarios=tuple(sys.argv[1:]))))))
"""


def _guest_argv(env: dict, *scenarios: str) -> list:
    """The guest command line a host process with `env` builds for a run of `scenarios`."""
    proc = subprocess.run(
        [sys.executable, "-c", ARGV, *scenarios],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture
def visible_site():
    """A folder the guest sees (not under /tmp, which the guest covers), removed afterwards."""
    site = Path(__file__).resolve().parent / f".guest-site-{os.getpid()}"
    assert not site.exists()
    yield site
    shutil.rmtree(site, ignore_errors=True)


def test_the_guest_is_told_to_skip_the_scan_only_when_the_host_found_no_entry_point(visible_site):
    plain = _guest_argv({}, "wp-gup-vmsplice")
    assert f"{ENTRY_POINTS_ENV}=none" in plain, plain
    site = fake_distribution(
        visible_site, "[uffdprobe.scenarios]\ndemo = uffd_demo\n", {"uffd_demo.py": USER_FILE.read_text()}
    )
    with_plugin = _guest_argv({"PYTHONPATH": str(site)}, "user-missing-copy")
    assert not any(word.startswith(f"{ENTRY_POINTS_ENV}=") for word in with_plugin), with_plugin


@pytest.mark.vm
def test_a_plugin_scenario_runs_in_a_guest(visible_site, tmp_path):
    site = fake_distribution(
        visible_site, "[uffdprobe.scenarios]\ndemo = uffd_demo\n", {"uffd_demo.py": USER_FILE.read_text()}
    )
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", "--kernel", "stock", "user-missing-copy", "--json", str(out)],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=900,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = results_of(out)["user-missing-copy"]
    assert r["verdict"] == "PASS" and r["kernel"]["release"].startswith("6.1."), r
    assert r["evidence"]["scenario_source"]["kind"] == "entry point", r["evidence"]
