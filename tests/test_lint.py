# SPDX-License-Identifier: GPL-2.0-only
"""The static checks CI enforces through the test command: ruff's lint rules and its formatter (pyproject.toml
[tool.ruff]) and mypy against its ratcheting baseline (tests/mypy-baseline.txt: new errors fail, fixed ones must
leave the file). All are the fast lane's (`tox -e lint,type` runs the same commands); they need no kernel and no root."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed: pip install -e '.[lint]'")
    return str(path)


def test_ruff_finds_nothing():
    done = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "uffdprobe", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_changes_nothing():
    """The code is as `ruff format` writes it (pyproject.toml [tool.ruff.format]); the one reformatting commit is
    in .git-blame-ignore-revs."""
    done = subprocess.run(
        [_tool("ruff"), "format", "--check", "--no-cache", "uffdprobe", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, "run `ruff format uffdprobe tests`:\n" + done.stdout + done.stderr


def test_the_blame_ignore_file_names_real_commits():
    """Every id in .git-blame-ignore-revs is a commit of this repository (where the checkout has its history)."""
    ids = [
        line.strip()
        for line in (ROOT / ".git-blame-ignore-revs").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ids and all(len(i) == 40 for i in ids), ids
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if shallow.stdout.strip() == "true":
        pytest.skip("a shallow clone may not hold the reformatting commit")
    for i in ids:
        kind = subprocess.run(["git", "cat-file", "-t", i], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert kind.stdout.strip() == "commit", (i, kind.stderr)


def test_mypy_finds_nothing_new():
    mypy = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "error:" in mypy.stdout or mypy.returncode == 0, mypy.stderr
    ratchet = subprocess.run(
        [_tool("mypy-baseline"), "filter", "--no-colors", "--hide-stats"],
        input=mypy.stdout,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ratchet.returncode == 0, (
        "mypy's errors differ from tests/mypy-baseline.txt: fix the new ones; for fixed ones run "
        "`mypy | mypy-baseline sync` and commit the shorter baseline\n" + ratchet.stdout[-4000:]
    )
