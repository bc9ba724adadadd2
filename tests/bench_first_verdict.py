"""Launch to first verdict, and the added cost per further scenario in the same boot, under TCG,
next to virtme-ng's boot-to-`true` on the same kernel. Prints numbers; asserts only that verdicts came.

Run: .venv/bin/python -m pytest -s -m benchmark tests/bench_first_verdict.py
"""
import sys
import threading
import time
from pathlib import Path

import pytest
from bench_vm import image_of, kernels, vng_binary, vng_boot_seconds

from uffdprobe.vm.boot import boot
from uffdprobe.vm.leftovers import vm_processes

pytestmark = [pytest.mark.benchmark, pytest.mark.vm]
ONE = ["wp-gup-vmsplice"]
SEVERAL = ["wp-gup-vmsplice", "wp-gup-odirect", "wp-gup-process-vm-readv", "cow-leak", "wp-real-write"]


def arrivals(kernel: Path, scenarios, run_dir: Path):
    """Seconds from launch to each verdict line landing on the host, and the boot's outcome."""
    stream = run_dir / "channel" / "results" / "verdicts.jsonl"
    seen, stop = [], threading.Event()
    started = time.monotonic()

    def watch():
        while not stop.wait(0.05):
            if stream.exists():
                lines = stream.read_text().count("\n")
                seen.extend([time.monotonic() - started] * (lines - len(seen)))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    argv = ["/usr/bin/env", "UFFDPROBE_SCRATCH_DEV=/dev/vda", sys.executable, "-m", "uffdprobe", "run",
            "--memory", "anon-4k", *scenarios]
    result = boot(kernel, argv, accel="tcg", run_dir=run_dir, timeout=300)
    stop.set()
    thread.join(1)
    return seen, result.outcome


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("label,kernel", kernels())
def test_first_verdict_and_per_scenario_cost(label, kernel, tmp_path):
    one, outcome_one = arrivals(kernel, ONE, tmp_path / "one")
    many, outcome_many = arrivals(kernel, SEVERAL, tmp_path / "many")
    assert outcome_one == outcome_many == "OK" and one and len(many) == len(SEVERAL)
    per_extra = (many[-1] - many[0]) / (len(many) - 1)
    print(f"\n== {label}: {kernel}")
    print(f"launch -> first verdict (1 scenario):      {one[0]:6.2f}s")
    print(f"launch -> first verdict ({len(SEVERAL)} scenarios):     {many[0]:6.2f}s")
    print(f"added cost per further scenario:           {per_extra:6.2f}s")
    if vng_binary():
        seconds, code = vng_boot_seconds(image_of(kernel), ("--force-9p",))
        print(f"virtme-ng --force-9p --exec true:          {seconds:6.2f}s (exit {code})")
        if code == 0:
            print(f"ratio first verdict / vng boot-to-true:    {one[0] / seconds:6.2f} (goal <= 0.5)")
        else:
            print("ratio: none, virtme-ng did not boot this kernel")
    else:
        print("virtme-ng: not installed (pip install virtme-ng)")
    assert not vm_processes()
