# SPDX-License-Identifier: GPL-2.0-only
"""A patch may only touch files inside the kernel source tree: a header path that is absolute, holds
`..`, or resolves outside the tree through a symlink is refused before anything is copied or written."""

import hashlib
import pathlib
import subprocess
import sys

import pytest

from uffdprobe.exitcodes import Exit
from uffdprobe.kbuild import patches
from uffdprobe.kbuild.errors import BadInput

NEW_FILE = "--- /dev/null\n+++ {path}\n@@ -0,0 +1 @@\n+written by a patch\n"
EDIT = "--- {path}\n+++ {path}\n@@ -1 +1 @@\n-{old}\n+overwritten by a patch\n"


def _build(tmp_path, patch: pathlib.Path):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "kernel", "build", "--patch", str(patch), "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    return proc, cache


@pytest.mark.reliability(
    "a patch header path with `..` (`--- a/../../../../../escape/x.txt`)",
    "one line naming the patch and the path, exit 2, nothing written inside or outside the cache",
)
def test_a_header_climbing_out_with_dotdot_is_refused(tmp_path):
    depth = "../" * (len(tmp_path.parts) + 2)
    patch = tmp_path / "0001-escape.patch"
    patch.write_text("Subject: escape\n\n" + NEW_FILE.format(path=f"b/{depth}{tmp_path.relative_to('/')}/escape/x.txt"))
    proc, cache = _build(tmp_path, patch)
    assert proc.returncode == Exit.USAGE, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert str(patch) in line and "contains '..'" in line and "escape/x.txt" in line
    assert not cache.exists()
    assert not (tmp_path / "escape").exists()


@pytest.mark.reliability(
    "a patch header path that is absolute (`--- a//etc/hostname`)",
    "one line naming the patch and the path, exit 2 (no traceback), the file untouched",
)
def test_an_absolute_header_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    before = hashlib.sha256(victim.read_bytes()).hexdigest()
    patch = tmp_path / "0001-absolute.patch"
    patch.write_text(EDIT.format(path=f"a/{victim}", old="mine"))
    proc, cache = _build(tmp_path, patch)
    assert proc.returncode == Exit.USAGE, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert str(patch) in line and "is absolute" in line and str(victim) in line
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == before
    assert not cache.exists()


@pytest.mark.reliability(
    "a patch header path that leaves the tree through a symlink in it",
    "refused naming the patch and the path before any copy, the target untouched",
)
def test_a_header_through_a_symlink_out_of_the_tree_is_refused(tmp_path):
    pristine, stage, outside = tmp_path / "tree", tmp_path / "stage", tmp_path / "outside"
    for d in (pristine, stage, outside):
        d.mkdir()
    (outside / "x.txt").write_text("theirs\n")
    (pristine / "link").symlink_to(outside)
    patch_file = tmp_path / "0001-link.patch"
    patch_file.write_text(EDIT.format(path="a/link/x.txt", old="theirs").replace("+++ a/", "+++ b/"))
    series = [patches.load(patch_file)]
    with pytest.raises(BadInput) as caught:
        patches.stage(series, pristine, stage)
    assert str(patch_file) in str(caught.value) and "link/x.txt" in str(caught.value)
    assert "resolves outside the source tree" in str(caught.value)
    assert (outside / "x.txt").read_text() == "theirs\n"
    assert list(stage.iterdir()) == []


def test_a_normal_header_still_stages(tmp_path):
    """The check refuses escapes only: a plain a/FILE b/FILE patch applies in the staging tree."""
    pristine, stage = tmp_path / "tree", tmp_path / "stage"
    (pristine / "mm").mkdir(parents=True)
    stage.mkdir()
    (pristine / "mm" / "gup.c").write_text("old\n")
    patch_file = tmp_path / "0001-ok.patch"
    patch_file.write_text(EDIT.format(path="a/mm/gup.c", old="old").replace("+++ a/", "+++ b/"))
    staged = patches.stage([patches.load(patch_file)], pristine, stage)
    assert staged["mm/gup.c"].read_text() == "overwritten by a patch\n"
    assert (pristine / "mm" / "gup.c").read_text() == "old\n"
