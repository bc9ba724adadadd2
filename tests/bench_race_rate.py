# SPDX-License-Identifier: GPL-2.0-only
"""The hit rate of a racy trigger, measured as a row's p_hit should be: many supervised runs of
tests/user_scenarios/racy_touch.py on the running kernel, each trying until its first hit; p_hit is hits
over tries made. Prints the estimate, the tries each run took (quartiles) and how many hit on their first
try (tries are not quite independent: a fresh thread's first race is won more often). Asserts only that
the runs came back with their tries.

Run: .venv/bin/python -m pytest -s -m benchmark tests/bench_race_rate.py (UFFDPROBE_BENCH_RUNS=N, default 30)
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER_FILE = ROOT / "tests" / "user_scenarios" / "racy_touch.py"
RUNS = int(os.environ.get("UFFDPROBE_BENCH_RUNS", "30"))


@pytest.mark.benchmark
@pytest.mark.skipif(os.geteuid() != 0, reason="userfaultfd for every user needs root here")
def test_racy_touch_hit_rate(tmp_path, capsys):
    out = tmp_path / "rate.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "--scenarios-from",
            str(USER_FILE),
            "user-racy-touch",
            "--runs",
            str(RUNS),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    races = [r["evidence"]["race"] for r in json.loads(out.read_text())["results"]]
    assert len(races) == RUNS and all(r["tries_made"] >= 1 for r in races), proc.stderr[-2000:]
    hits = [r["hit_on_try"] for r in races if r["hit_on_try"]]
    made = sum(r["tries_made"] for r in races)
    quartiles = statistics.quantiles(hits, n=4) if len(hits) > 1 else hits
    with capsys.disabled():
        print(
            f"\nuser-racy-touch on {os.uname().release}, load {os.getloadavg()[0]:.1f}: {len(hits)} hits in "
            f"{made} tries over {RUNS} runs: p_hit {len(hits) / made:.4f} per try"
        )
        print(
            f"  tries to the hit: quartiles {', '.join(f'{q:g}' for q in quartiles)}; "
            f"on the first try: {sum(h == 1 for h in hits)} of {len(hits)}; the row declares "
            f"p_hit {races[0]['p_hit']}"
        )
