# SPDX-License-Identifier: GPL-2.0-only
"""Shell completion (argcomplete) offers `host`, the recipe names and the scenario names where a kernel or a
scenario is asked for: the completers themselves, and the real command answering a shell's request."""

import os
import subprocess
import sys

import pytest

from uffdprobe.cli.vocab import complete_kernel, complete_scenario
from uffdprobe.kbuild import recipes
from uffdprobe.scenarios.registry import SCENARIOS

PUBLIC = sorted(s.name for s in SCENARIOS.values() if not s.test_only)


def test_the_completers():
    assert set(complete_kernel("")) >= {"host", *recipes.names()} and "stock" in recipes.names()
    assert complete_kernel("sto") == [n for n in recipes.names() if n.startswith("sto")]
    assert complete_kernel("old=model-5.8") == [f"old={n}" for n in recipes.names() if n.startswith("model-5.8")]
    assert complete_kernel("ho") == ["host"]
    assert sorted(complete_scenario("")) == PUBLIC
    assert complete_scenario("cow-") == [n for n in PUBLIC if n.startswith("cow-")] != []
    assert not any(SCENARIOS[n].test_only for n in complete_scenario("selftest"))  # test-only ones stay hidden


def _shell_asks(line: str, tmp_path) -> list:
    """What `uffdprobe` answers a shell completing `line` (argcomplete's protocol, as bash's hook calls it)."""
    out = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    # argcomplete writes to fds 8 and 9 as well: bash gives them /dev/null, leaving pytest's own fds alone
    subprocess.run(
        ["bash", "-c", 'exec "$@" 8>/dev/null 9>/dev/null', "bash", sys.executable, "-m", "uffdprobe"],
        env=env,
        cwd="/",
        timeout=60,
        capture_output=True,
    )
    return sorted(x.strip() for x in out.read_text().split("\n") if x.strip())


@pytest.mark.parametrize(
    "line,expected",
    [
        ("uffdprobe run --kernel st", sorted(n for n in recipes.names() if n.startswith("st"))),
        ("uffdprobe matrix --kernel h", ["host"]),
        ("uffdprobe check --kernel old=model-5.7", ["old=model-5.7"]),
        ("uffdprobe boot model-5.8-break", sorted(n for n in recipes.names() if n.startswith("model-5.8-break"))),
        ("uffdprobe run cow", [n for n in PUBLIC if n.startswith("cow")]),
        ("uffdprobe run --scenario wp-", [n for n in PUBLIC if n.startswith("wp-")]),
        ("uffdprobe matrix --kernel host --scenario umap", [n for n in PUBLIC if n.startswith("umap")]),
        ("uffdprobe bisect --scenario release", [n for n in PUBLIC if n.startswith("release")]),
    ],
)
def test_the_shell_gets_them(tmp_path, line, expected):
    assert expected and _shell_asks(line, tmp_path) == expected
