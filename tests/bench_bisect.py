# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark a kernel bisection; prints numbers only (seconds), asserts nothing.

  .venv/bin/python tests/bench_bisect.py              # fresh history, real ccache, then one cold build
  .venv/bin/python tests/bench_bisect.py --no-cold    # skip the cold build (about 9 min on 2 cores)
  .venv/bin/python tests/bench_bisect.py --log DIR/bisect.jsonl   # only print a finished bisection's numbers

Rows: each step (incremental build, files compiled, boot + verdict, whole step), the whole
bisection, then one cold build of the good commit (fresh build directory, ccache disabled).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from uffdprobe.bisect import build as bisect_build, history as bisect_history, log as bisect_log
from uffdprobe.kbuild import build as kbuild  # noqa: E402


def print_steps(log_path: Path) -> None:
    steps = bisect_log.read(log_path, "step")
    print(f"{'step':<10} {'commit':<12} {'decision':<8} {'build_s':>8} {'compiled':>8} {'boot_s':>8} {'step_s':>8}")
    for s in steps:
        print(
            f"{s['role']:<10} {s['commit'][:12]:<12} {s['decision']:<8} {s['build_s'] or 0:8.1f} "
            f"{s['compiled']:8d} {s['boot_s'] or 0:8.1f} {s['step_s']:8.1f}"
        )
    for r in bisect_log.read(log_path, "result"):
        print(f"{'bisection':<10} {'':<12} {len(steps):<8} {'':>8} {'':>8} {'':>8} {r['total_s']:8.1f}")


def bisect(scratch: Path) -> tuple:
    roles = bisect_history.make_history(scratch / "tree", bisect_history.cached_import(progress=False))
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "bisect",
            "--tree",
            str(scratch / "tree"),
            "--results-dir",
            str(scratch),
            "--good",
            roles["good"],
            "--bad",
            "main",
            "--scenario",
            "wp-gup-vmsplice",
            "--memory",
            "anon-4k",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=4 * 3600,
    )
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return roles, time.monotonic() - started


def cold_build(scratch: Path, good: str) -> float:
    tree = scratch / "tree"
    subprocess.run(["git", "-C", str(tree), "checkout", "--quiet", "--detach", good], check=True, timeout=600)
    os.environ["CCACHE_DISABLE"] = "1"
    try:
        built = bisect_build.build_step(
            tree, scratch / "cold", "tinyconfig", [kbuild.DEFAULT_FRAGMENT], label="cold", progress=False
        )
    finally:
        os.environ.pop("CCACHE_DISABLE")
    return built.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="a bisect.jsonl to print instead of bisecting")
    parser.add_argument("--no-cold", action="store_true", help="leave out the cold build")
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp"), help="where the history and builds go")
    args = parser.parse_args()
    if args.log:
        print_steps(args.log)
        return 0
    scratch = Path(tempfile.mkdtemp(dir=args.scratch, prefix="bench-bisect-"))
    try:
        roles, wall = bisect(scratch)
        print_steps(scratch / "bisect.jsonl")
        print(f"{'wall':<10} {'':<12} {'':<8} {'':>8} {'':>8} {'':>8} {wall:8.1f}")
        if not args.no_cold:
            print(f"{'cold':<10} {roles['good'][:12]:<12} {'build':<8} {cold_build(scratch, roles['good']):8.1f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
