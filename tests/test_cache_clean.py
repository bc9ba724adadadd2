# SPDX-License-Identifier: GPL-2.0-only
"""`kernel clean` never removes what another process is using, and finishes half-done removals.

A real `kernel build` unpacks the Debian tarball into a fresh cache while `kernel clean --all`
runs beside it; a real dead process's `.rm-*` tree is left behind for clean to finish.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from uffdprobe.exitcodes import Exit
from uffdprobe.kbuild import cache as kbuild_cache
from uffdprobe.kbuild.source import DEFAULT_TARBALL


def _cli(*argv, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *map(str, argv)], capture_output=True, text=True, timeout=timeout
    )


def _locks_free(root: Path) -> None:
    for path in (root / "locks").glob("*.lock"):
        fd = kbuild_cache.try_lock(root, path.stem)
        assert fd is not None, f"lock {path.stem} is still held"
        os.close(fd)


@pytest.mark.timeout(600)
@pytest.mark.reliability(
    "`kernel clean --all` while another process unpacks the kernel source",
    "the tree being unpacked is left alone (one line, exit 2), the unpack goes on; after "
    "it ends clean --all removes everything, no .rm-* left, no lock held",
)
def test_clean_all_leaves_an_unpack_in_progress_alone(tmp_path):
    if not DEFAULT_TARBALL.exists():
        pytest.skip(f"{DEFAULT_TARBALL} is not installed")
    root = tmp_path / "kcache"
    build = subprocess.Popen(
        [sys.executable, "-m", "uffdprobe", "kernel", "build", "stock", "--cache-dir", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list((root / "sources").glob(".tmp-*/unpack/*")):
            assert build.poll() is None, build.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the unpack never started"
            time.sleep(0.1)
        unpacking = list((root / "sources").glob(".tmp-*"))
        done = _cli("kernel", "clean", "--all", "--cache-dir", root)
        assert done.returncode == Exit.SETUP, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert "left sources and workspaces alone" in line
        assert all(p.exists() for p in unpacking), "clean removed the tree being unpacked"
        assert build.poll() is None, "the build died of the clean"
        tar = [c for c in psutil.Process(build.pid).children(recursive=True) if c.name() in ("tar", "xz")]
        os.kill(build.pid, signal.SIGINT)
        _, err = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.communicate(timeout=30)
    assert build.returncode == Exit.INTERRUPTED, err[-2000:]
    assert "Traceback" not in err
    assert not list((root / "sources").glob(".tmp-*")), "the interrupted unpack left its partial tree"
    assert not [t for t in tar if t.is_running() and t.status() != psutil.STATUS_ZOMBIE]
    again = _cli("kernel", "clean", "--all", "--cache-dir", root)
    assert again.returncode == Exit.OK, again.stderr
    assert not (root / "sources").exists() and not list(root.rglob(".rm-*"))
    _locks_free(root)


@pytest.mark.reliability(
    "a `.rm-sources-<pid>` tree left half removed by a killed clean",
    "the next clean finishes it (dead pid), leaves a live process's alone",
)
def test_clean_finishes_a_dead_process_half_done_removal(tmp_path):
    root = tmp_path / "kcache"
    root.mkdir()
    kbuild_cache.mark(root)  # a cache of ours, as a build would leave it
    (root / "entries").mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        half = root / f".rm-sources-{dead.pid}"
        (half / "deadbeef" / "tree" / "mm").mkdir(parents=True)
        (half / "deadbeef" / "tree" / "mm" / "gup.c").write_bytes(os.urandom(1 << 20))
        theirs = root / "work" / f".rm-0123456789abcdef-{live.pid}"
        theirs.mkdir(parents=True)
        (theirs / "file").write_text("still being removed by its owner\n")
        done = _cli("kernel", "clean", "--cache-dir", root)
        assert done.returncode == Exit.OK, done.stderr
        assert not half.exists()
        assert (theirs / "file").exists()
        assert f"removed {half}" in done.stderr
    finally:
        live.kill()
        live.wait()
