# SPDX-License-Identifier: GPL-2.0-only
"""`run --kernel K --results-dir R` streams each verdict into R as the guest reports it, so a real
Ctrl-C mid-run keeps every verdict that arrived, in R, and says so."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from uffdprobe.exitcodes import Exit
from uffdprobe.results import report


def _lines(path) -> int:
    return len(report.read_jsonl(path)) if path.exists() else 0


@pytest.mark.vm
@pytest.mark.timeout(600)
@pytest.mark.reliability(
    "Ctrl-C during `run --kernel K --results-dir R` after some verdicts arrived",
    "R holds every verdict that arrived (streamed, not written at the end), the line names R, exit 130, no QEMU left",
)
def test_ctrl_c_keeps_the_streamed_verdicts_in_the_results_dir(tmp_path):
    results = tmp_path / "R"
    stream = results / "verdicts.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "--kernel",
            "stock",
            "--results-dir",
            str(results),
            "--runs",
            "3",
            "--accel",
            "tcg",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 400
        while _lines(stream) < 2:  # streamed while the guest still runs
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no verdict streamed into the results dir"
            time.sleep(0.2)
        qemu = [c for c in psutil.Process(proc.pid).children(recursive=True) if "qemu" in c.name()]
        assert qemu, "the VM should still be running while verdicts stream"
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    assert proc.returncode == Exit.INTERRUPTED, err[-2000:]
    said = [x for x in err.splitlines() if x.startswith("uffdprobe:")]
    assert len(said) == 1 and str(results) in said[0] and "kept" in said[0], said
    kept = report.read_jsonl(stream)
    assert len(kept) >= 2
    assert sum(1 for x in out.splitlines() if x.strip()) >= len(kept)  # every kept verdict was also printed
    assert "Traceback" not in err
    assert not [q for q in qemu if q.is_running() and q.status() != psutil.STATUS_ZOMBIE]
