# SPDX-License-Identifier: GPL-2.0-only
"""The child report (run.json) a `uffdprobe run` leaves in its results folder, read back by a matrix. Real
runs on the host kernel; no boots."""

import json
import subprocess
import sys

from uffdprobe.run import child_report


def uffdprobe(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "uffdprobe", *args], capture_output=True, text=True, timeout=timeout)


def test_a_run_reports_its_exit_status_and_no_boot_on_the_running_kernel(tmp_path):
    proc = uffdprobe("run", "cow-leak", "--memory", "anon-4k", "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / child_report.FILE).read_text())
    assert data["format"] == child_report.FORMAT and data["exit_status"] == 0 and data["error"] == ""
    said = child_report.read(tmp_path)
    assert said.exit_status == 0 and said.run_dir is None and said.facts() == {"exit_status": 0}


def test_an_error_is_reported_with_its_status_and_its_line(tmp_path):
    proc = uffdprobe("run", "cow-leak", "--param", "nope=1", "--results-dir", str(tmp_path))
    assert proc.returncode == 2
    said = child_report.read(tmp_path)
    assert said.exit_status == 2 and said.error and f"uffdprobe: {said.error}" in proc.stderr


def test_a_refused_run_leaves_no_folder_and_a_missing_report_reads_empty(tmp_path):
    proc = uffdprobe("run", "nope", "--results-dir", str(tmp_path / "never"))
    assert proc.returncode == 2 and not (tmp_path / "never").exists()
    assert child_report.read(tmp_path / "never") == child_report.ChildReport()
    (tmp_path / child_report.FILE).write_text("{not json")
    assert child_report.read(tmp_path) == child_report.ChildReport()
