"""Benchmark the kernel builder; prints numbers only (seconds), asserts nothing.

  .venv/bin/python tests/bench_kbuild.py            # cold: fresh kernel cache and fresh ccache
  .venv/bin/python tests/bench_kbuild.py --warm     # the real cache and ccache as they are

Rows: the base (stock) build, each variant built after it, then a cache hit of each.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from uffdprobe.kbuild import build as kbuild  # noqa: E402

VARIANTS = ["stock", "model-5.7", "model-5.8", "model-5.8-break-cow", "model-5.8-break-cow-fixup"]


def timed(name: str, cache_dir, label: str) -> float:
    started = time.monotonic()
    built = kbuild.build(name, progress=False, cache_dir=cache_dir)
    seconds = time.monotonic() - started
    print(f"{label:<28} {name:<26} {seconds:8.2f} s  cached={built.cached}", flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="use the real cache and ccache")
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp"), help="where a cold run's caches go")
    args = parser.parse_args()
    scratch = None
    cache_dir = None
    if not args.warm:
        scratch = Path(tempfile.mkdtemp(dir=args.scratch, prefix="bench-kbuild-"))
        cache_dir = scratch / "kernels"
        os.environ["CCACHE_DIR"] = str(scratch / "ccache")
    try:
        total = 0.0
        for i, name in enumerate(VARIANTS):
            total += timed(name, cache_dir, "base build" if i == 0 else "variant after base")
        print(f"{'all variants, built':<28} {'':<26} {total:8.1f} s")
        for name in VARIANTS:
            timed(name, cache_dir, "cache hit")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
