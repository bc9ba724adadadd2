# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark the kernel builder; prints numbers only (seconds), asserts nothing.

  .venv/bin/python tests/bench_kbuild.py            # cold: fresh kernel cache and fresh ccache
  .venv/bin/python tests/bench_kbuild.py --warm     # the real cache and ccache as they are
  .venv/bin/python tests/bench_kbuild.py --fragments 1ab28e0 HEAD   # the base build, cold, per fragment

Rows: the base (stock) build, each variant built after it, then a cache hit of each. With --fragments:
the stock recipe built cold (a fresh cache, so a fresh source tree, and ccache off) once with
vm-images/fragments/x86_64.config as each git revision has it, in the order given (repeat a revision to
alternate), each row with its wall time, make's objects and the bzImage size, then the ratios.
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
from uffdprobe.kbuild import build as kbuild, recipes  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FRAGMENT = "vm-images/fragments/x86_64.config"
VARIANTS = ["stock", "model-5.7", "model-5.8", "model-5.8-break-cow", "model-5.8-break-cow-fixup"]


def timed(name: str, cache_dir, label: str) -> float:
    started = time.monotonic()
    built = kbuild.build(name, progress=False, cache_dir=cache_dir)
    seconds = time.monotonic() - started
    print(f"{label:<28} {name:<26} {seconds:8.2f} s  cached={built.cached}", flush=True)
    return seconds


def cold_base_build(revision: str, scratch: Path, keep: Path = None) -> dict:
    """The stock recipe with the fragment of `revision`, built into a fresh cache with ccache off."""
    where = Path(tempfile.mkdtemp(dir=scratch, prefix=f"frag-{revision}-"))
    try:
        fragment = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{revision}:{FRAGMENT}"], check=True, capture_output=True, text=True
        ).stdout
        (where / "x86_64.config").write_text(fragment)
        stock = (REPO / "vm-images/recipes/stock.toml").read_text()
        (where / "stock.toml").write_text(stock.replace('"../fragments/x86_64.config"', '"x86_64.config"'))
        os.environ["CCACHE_DISABLE"] = "1"
        started = time.monotonic()
        built = kbuild.build(recipes.load(where / "stock.toml"), progress=False, cache_dir=where / "kernels")
        seconds = time.monotonic() - started
        objects = sum(1 for _ in (where / "kernels" / "work").rglob("*.o"))
        if keep:  # the image, to boot or hand to vng afterwards
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built.bzimage, keep / f"bzImage-{revision}")
        options = sum(1 for line in fragment.splitlines() if line.startswith("CONFIG_"))
        return {
            "revision": revision,
            "seconds": seconds,
            "objects": objects,
            "fragment_options": options,
            "bzimage_bytes": built.bzimage.stat().st_size,
        }
    finally:
        os.environ.pop("CCACHE_DISABLE", None)
        shutil.rmtree(where, ignore_errors=True)


def compare_fragments(revisions, scratch: Path, keep: Path = None) -> int:
    print(f"cold base (stock) build per fragment revision; load average before: {os.getloadavg()}", flush=True)
    rows = []
    for revision in revisions:
        row = cold_base_build(revision, scratch, keep)
        rows.append(row)
        print(
            f"{revision:<12} {row['seconds']:8.1f} s  {row['objects']:6d} objects  "
            f"{row['fragment_options']:4d} fragment options  bzImage {row['bzimage_bytes']:9d} bytes  "
            f"load average after: {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    first = rows[0]
    for row in rows[1:]:
        print(
            f"{row['revision']} / {first['revision']}: time {row['seconds'] / first['seconds']:.2f}, "
            f"objects {row['objects'] / first['objects']:.2f}"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="use the real cache and ccache")
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp"), help="where a cold run's caches go")
    parser.add_argument(
        "--fragments",
        nargs="+",
        metavar="REV",
        help="build the base cold once per git revision of the fragment, in this order",
    )
    parser.add_argument("--keep-images", type=Path, metavar="DIR", help="with --fragments: keep each bzImage there")
    args = parser.parse_args()
    if args.fragments:
        return compare_fragments(args.fragments, args.scratch, args.keep_images)
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
