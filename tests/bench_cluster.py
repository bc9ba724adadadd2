# SPDX-License-Identifier: GPL-2.0-only
"""The same matrix serially and on a Dask LocalCluster (`--cluster local:2`): wall time and per-kernel times
side by side from one run, then the speed-up each added worker would give, projected from the measured
per-kernel costs. Prints numbers; asserts only that both runs answered every cell alike.

On a 2-core machine one TCG guest can take both cores, so local:2 is not expected to be much faster here:
the two guests share the cores (they still overlap where a guest waits out a hang timeout). The
projection assumes each worker has cores of its own.

Run: .venv/bin/python -m pytest -s -m benchmark tests/bench_cluster.py
     UFFDPROBE_BENCH_KERNELS="host stock model-5.8" UFFDPROBE_BENCH_SCENARIOS="wp-gup-vmsplice cow-leak" ...
"""

import heapq
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the cluster extra (dask[distributed]) is not installed")
pytestmark = [pytest.mark.benchmark, pytest.mark.vm]

KERNELS = os.environ.get("UFFDPROBE_BENCH_KERNELS", "host stock model-5.8").split()
SCENARIOS = os.environ.get("UFFDPROBE_BENCH_SCENARIOS", "").split()


def run_matrix(folder: Path, *extra) -> tuple:
    """Wall seconds of one `uffdprobe matrix`, its JSON and its exit status."""
    args = [a for k in KERNELS for a in ("--kernel", k)] + [a for s in SCENARIOS for a in ("--scenario", s)]
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "-q",
            *args,
            *extra,
            "--results-dir",
            str(folder),
            "--json",
            str(folder.with_suffix(".json")),
        ],
        capture_output=True,
        text=True,
        timeout=7200,
        stdin=subprocess.DEVNULL,
    )
    wall = time.monotonic() - started
    assert done.returncode in (0, 7), done.stderr[-3000:]
    return wall, json.loads(folder.with_suffix(".json").read_text()), done.returncode


def per_kernel(data: dict) -> dict:
    return {k["label"]: float(k["boot"].get("seconds") or 0.0) for k in data["kernels"]}


def cells(data: dict) -> dict:
    return {(c["kernel"], c["scenario"], c["memory"]): c["verdict"] for c in data["cells"]}


def makespan(costs: list, workers: int) -> float:
    """The finishing time of `costs` on `workers` one-VM workers, longest first onto the least loaded."""
    loads = [0.0] * workers
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)


@pytest.mark.timeout(7200)
def test_serial_next_to_local_cluster(tmp_path):
    serial_wall, serial, serial_rc = run_matrix(tmp_path / "serial")
    cluster_wall, cluster, cluster_rc = run_matrix(tmp_path / "cluster", "--cluster", "local:2")
    assert cells(cluster) == cells(serial) and serial_rc == cluster_rc
    s_cost, c_cost = per_kernel(serial), per_kernel(cluster)
    print(f"\n== matrix {' '.join(KERNELS)}; scenarios: {' '.join(SCENARIOS) or 'all'}; {os.cpu_count()} cores")
    print(f"{'kernel':<28}{'serial s':>10}{'local:2 s':>11}")
    for label in s_cost:
        print(f"{label:<28}{s_cost[label]:>10.1f}{c_cost.get(label, 0.0):>11.1f}")
    print(f"{'wall (whole command)':<28}{serial_wall:>10.1f}{cluster_wall:>11.1f}")
    print(
        f"speed-up of local:2 here: {serial_wall / cluster_wall:.2f}x (one TCG guest uses ~2 cores; this "
        f"machine has {os.cpu_count()})"
    )
    fixed = max(0.0, serial_wall - sum(s_cost.values()))  # startup, cache look-ups, reports
    booted = [c for label, c in s_cost.items() if label != "host"]  # host runs on the client
    host = s_cost.get("host", 0.0)
    print(
        f"\nprojected from the serial per-kernel costs (fixed {fixed:.1f}s, host {host:.1f}s on the client,"
        " one VM per worker with its own cores):"
    )
    for name, costs in (("this matrix", booted), ("20 kernels of these costs", (booted * 20)[:20] if booted else [])):
        if not costs:
            continue
        one = fixed + max(host, makespan(costs, 1))
        print(f"  {name} ({len(costs)} booted):")
        before = 1.0
        for workers in range(1, len(costs) + 1):
            wall = fixed + max(host, makespan(costs, workers))
            print(
                f"    {workers:>2} worker(s): {wall:8.1f}s  speed-up {one / wall:5.2f}x  "
                f"this worker adds {one / wall - before:+5.2f}x"
            )
            before = one / wall
