# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark the README's main job, `bash .ci/bootstrap main`, as a user runs it; prints numbers only.

  .venv/bin/python tests/bench_main_job.py           # on the caches as they are (warm: kernels built)

Each line of the job's output is stamped with seconds since its start, so the set-up (apt check, venv, pip,
doctor) and the matrix (host, then one boot per kernel) show apart; then the total next to the goal (a
fresh machine: at most 12 minutes, apt and the cold stock build included, which a warm run skips).
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 12 * 60


def main() -> int:
    out = Path(tempfile.mkdtemp(prefix="bench-main-job-"))
    argv = [
        "bash",
        str(REPO / ".ci/bootstrap"),
        "main",
        "--html",
        str(out / "matrix.html"),
        "--json",
        str(out / "matrix.json"),
    ]
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    started = time.monotonic()
    matrix_at = None
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for line in proc.stdout:
            at = time.monotonic() - started
            if matrix_at is None and re.match(r"\[\d+/\d+\] ", line):  # the matrix's first kernel line
                matrix_at = at
            print(f"{at:7.1f}s  {line.rstrip()}", flush=True)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    total = time.monotonic() - started
    setup = matrix_at if matrix_at is not None else float("nan")
    print(
        f"\nexit {proc.returncode}; set-up {setup:.1f}s, matrix {total - setup:.1f}s, total {total:.1f}s; "
        f"total / 12-minute goal: {total / GOAL_SECONDS:.2f}; load average after: "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"reports: {out}")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
