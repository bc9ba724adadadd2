# SPDX-License-Identifier: GPL-2.0-only
"""Selftests from the kernel under test (issue 28): --kselftest-from a source tree, any mm selftest by name,
a recipe's own tree when it has the programs, and the rows saying which tree they came from."""

import json
import subprocess
import sys

import pytest

from uffdprobe.kbuild import cache, kselftest as build, recipes, source
from uffdprobe.run import selftests

pytestmark = pytest.mark.timeout(1800)
no_tarball = pytest.mark.skipif(not build.TARBALL.is_file(), reason=f"no {build.TARBALL}")


@pytest.fixture(scope="module")
def tree_6_12():
    """Debian's 6.12 tree as the builder unpacked it (a kernel source tree like any user's)."""
    return source.materialize(source.parse_spec(str(build.TARBALL)), cache.default_root(), progress=False)


@no_tarball
def test_a_recipe_uses_its_own_tree_only_when_it_has_the_programs(tree_6_12):
    """6.1's tree has no cow or gup_longterm (mm/cow.c came later), 6.12's has both: stock-6.12 builds
    them from its own tree, the 6.1 recipes from the default, and the rows say which."""
    assert not selftests._tree_has(recipes.load("stock").source, ["cow"])
    assert selftests._tree_has(recipes.load("stock-6.12").source, ["cow", "gup_longterm"])
    assert "userfaultfd" in build.available(
        source.materialize(source.parse_spec(recipes.load("stock").source), cache.default_root(), progress=False).tree
    )


@no_tarball
@pytest.mark.build
def test_kselftest_from_a_tree_builds_any_mm_selftest_by_name(tree_6_12, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "--kselftest",
            "gup_longterm,mkdirty",
            "--kselftest-from",
            str(tree_6_12.tree),
            "--scenario",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--results-dir",
            str(out),
            "--json",
            str(out / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())["results"]
    rows = {r["scenario"]: r for r in results}
    mkdirty = [r for r in results if r["scenario"].startswith("mkdirty: ")]
    assert rows["mkdirty"]["verdict"] in ("PASS", "SKIP") and mkdirty, rows["mkdirty"]["reason"]
    assert len(mkdirty) == rows["mkdirty"]["evidence"]["cases"]
    for r in results:
        if r["memory"] == "-":
            assert r["evidence"]["selftests_from"] == f"{tree_6_12.tree} ({tree_6_12.version})"
    assert (out / "kselftest-mkdirty.txt").is_file()
