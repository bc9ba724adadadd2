# SPDX-License-Identifier: GPL-2.0-only
"""A kernel cache carries a marker uffdprobe wrote (CACHEDIR.TAG): `kernel clean` refuses any folder
without one and removes nothing there; an older cache of ours gets its marker when the tool uses it;
a kernel a running matrix holds is never removed under it (issue 27)."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from uffdprobe.exitcodes import Exit
from uffdprobe.kbuild import build as kbuild, cache as kbuild_cache

REAL = kbuild_cache.default_root()


def _cli(*argv, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _snapshot(root: Path) -> dict:
    """Every path under `root` with its type, mode and bytes (or link target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        body = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        out[str(path.relative_to(root))] = (st.st_mode, body)
    return out


def _private_stock_cache(root: Path) -> Path:
    """A cache at `root` holding the real cache's stock kernel, laid out as before markers existed (no
    CACHEDIR.TAG); the entry's folder. Skipped when stock is not built."""
    stock = kbuild.cached("stock")
    if stock is None:
        pytest.skip("stock is not in the kernel cache: run `uffdprobe kernel build stock` once")
    alias = next(a for a in (REAL / "aliases").glob("*.json") if stock.key in a.read_text())
    (root / "aliases").mkdir(parents=True)
    shutil.copy(alias, root / "aliases" / alias.name)
    shutil.copy(REAL / "source-hashes.json", root / "source-hashes.json")
    (root / "locks").mkdir()
    (root / "locks" / "in-use.lock").touch()
    entry = root / "entries" / stock.key
    shutil.copytree(stock.bzimage.parent, entry, symlinks=True)
    return entry


@pytest.mark.parametrize("everything", [False, True], ids=["clean", "clean --all"])
@pytest.mark.reliability(
    "`kernel clean [--all] --cache-dir DIR` on a folder uffdprobe did not make (work/thesis.tex, "
    "sources/main.c, entries/, aliases/, source-hashes.json)",
    "refused: one line naming the folder and the missing marker, exit 2; every file byte-identical",
)
def test_clean_refuses_a_folder_uffdprobe_did_not_make(tmp_path, everything):
    root = tmp_path / "thesis"
    for name, text in {
        "work/thesis.tex": "\\documentclass{article}\n",
        "sources/main.c": "int main(void){}\n",
        "entries/notes.txt": "mine\n",
        "aliases/a.json": "{}\n",
        "source-hashes.json": "{}\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    before = _snapshot(root)
    done = _cli("kernel", "clean", *(["--all"] if everything else []), "--cache-dir", root)
    assert done.returncode == Exit.USAGE, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert str(root) in line and "not a uffdprobe kernel cache" in line and "removed nothing" in line
    assert _snapshot(root) == before


@pytest.mark.reliability(
    "a kernel cache made before markers existed (its own layout, no CACHEDIR.TAG)",
    "`kernel clean` refuses it until the tool uses it: a cache-hit `kernel build` writes "
    "the marker, then clean removes the kernel",
)
def test_an_older_cache_of_ours_is_marked_when_used(tmp_path):
    root = tmp_path / "kcache"
    entry = _private_stock_cache(root)
    refused = _cli("kernel", "clean", "--cache-dir", root)
    assert refused.returncode == Exit.USAGE and entry.exists(), refused.stderr
    hit = _cli("kernel", "build", "stock", "--quiet", "--cache-dir", root, timeout=600)
    assert hit.returncode == Exit.OK, hit.stderr
    assert hit.stdout.strip() == str(entry / "bzImage")
    assert kbuild_cache.is_marked(root)
    done = _cli("kernel", "clean", "--cache-dir", root)
    assert done.returncode == Exit.OK, done.stderr
    assert f"removed {entry}" in done.stderr and not entry.exists()


def test_a_folder_holding_something_else_is_never_marked(tmp_path):
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "in-use.lock").touch()
    (tmp_path / "thesis.tex").write_text("x\n")
    kbuild_cache.mark(tmp_path)
    assert not kbuild_cache.is_marked(tmp_path)
    fresh = tmp_path / "new"
    fresh.mkdir()
    kbuild_cache.mark(fresh)
    assert kbuild_cache.is_marked(fresh)


class _Lines:
    """A subprocess's stderr lines as they come."""

    def __init__(self, argv: list, env: dict):
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        self.lines: list = []
        self.out = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            assert self.proc.poll() is None, "\n".join(self.lines[-40:])
            assert time.monotonic() < deadline, f"no line matching {pattern!r}: " + "\n".join(self.lines[-40:])
            time.sleep(0.2)


@pytest.mark.vm
@pytest.mark.skipif(os.geteuid() != 0, reason="boots a guest (root, as the VM tests)")
@pytest.mark.timeout(1500)
@pytest.mark.reliability(
    "`kernel clean --all` while a matrix holds the kernel it is about to boot",
    "the kernel is kept (clean says so, exit 0), the matrix boots it and writes its "
    "whole report (PASS), exit 0; once the matrix ended clean removes it",
)
def test_clean_leaves_the_kernel_of_a_running_matrix(tmp_path):
    xdg = tmp_path / "xdg"
    root = xdg / "uffdprobe" / "kernels"
    entry = _private_stock_cache(root)
    if (REAL.parent / "accel.json").exists():  # the accelerator probe's answer: not asked again
        shutil.copy(REAL.parent / "accel.json", xdg / "uffdprobe" / "accel.json")
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg)}
    out = tmp_path / "m.json"
    m = _Lines(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            "stock",
            "--scenario",
            "wp-real-write",
            "--memory",
            "anon-4k",
            "--json",
            str(out),
            "--results-dir",
            str(tmp_path / "r"),
        ],
        env,
    )
    try:
        m.wait_for(r"stock \| \[vm\] (preparing|booting)", 900)
        clean = _cli("kernel", "clean", "--all", "--cache-dir", root)
        assert clean.returncode == Exit.OK, clean.stderr
        assert "kept 1 kernel(s) in use" in clean.stderr and entry.joinpath("bzImage").exists()
        m.proc.wait(timeout=1200)
    finally:
        if m.proc.poll() is None:
            os.killpg(m.proc.pid, 9)
            m.proc.wait(timeout=30)
    assert m.proc.returncode == Exit.OK, "\n".join(m.lines[-40:])
    import json

    cells = json.loads(out.read_text())["cells"]
    assert cells and {c["verdict"] for c in cells} == {"PASS"}
    again = _cli("kernel", "clean", "--all", "--cache-dir", root)
    assert again.returncode == Exit.OK and not entry.exists(), again.stderr


@pytest.mark.vm
@pytest.mark.skipif(os.geteuid() != 0, reason="boots a guest (root, as the VM tests)")
@pytest.mark.timeout(1500)
@pytest.mark.reliability(
    "the second kernel's image file removed while a matrix boots the first",
    "no crash: the first kernel's verdicts (PASS) and the second's ERROR rows naming the "
    "missing file are in the report, exit 7 (undeclared ERROR cells)",
)
def test_an_image_removed_mid_matrix_still_gives_a_report(tmp_path):
    stock = kbuild.cached("stock")
    if stock is None:
        pytest.skip("stock is not in the kernel cache: run `uffdprobe kernel build stock` once")
    first, second = tmp_path / "first.bzImage", tmp_path / "second.bzImage"
    shutil.copy(stock.bzimage, first)
    shutil.copy(stock.bzimage, second)
    out = tmp_path / "m.json"
    m = _Lines(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            f"a={first}",
            "--kernel",
            f"b={second}",
            "--scenario",
            "wp-real-write",
            "--memory",
            "anon-4k",
            "--json",
            str(out),
            "--results-dir",
            str(tmp_path / "r"),
        ],
        dict(os.environ),
    )
    try:
        m.wait_for(r"a \| \[vm\] (preparing|booting)", 900)
        second.unlink()
        m.proc.wait(timeout=1200)
    finally:
        if m.proc.poll() is None:
            os.killpg(m.proc.pid, 9)
            m.proc.wait(timeout=30)
    assert m.proc.returncode == Exit.UNEXPECTED, "\n".join(m.lines[-40:])  # the ERROR cells are undeclared
    assert not any("Traceback" in line or "unexpected" in line for line in m.lines), "\n".join(m.lines[-40:])
    import json

    cells = {c["kernel"]: c for c in json.loads(out.read_text())["cells"]}
    assert cells["a"]["verdict"] == "PASS"
    assert cells["b"]["verdict"] == "ERROR" and str(second) in json.dumps(cells["b"]), cells["b"]
