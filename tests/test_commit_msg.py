# SPDX-License-Identifier: GPL-2.0-only
"""The commit-msg hook (.ci/commit_msg.py) on real messages of this project's history, as a program, and
installed by pre-commit into a scratch repository where git itself runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / ".ci" / "commit_msg.py"

#: Messages of this repository's history, verbatim (commit ids for reference), with what the hook must say.
GOOD = {
    "f757c10": "uffd, scenarios: ruff and the mypy ratchet pass after the merge\n\n"
    "Category is a plain IntFlag class now (mypy cannot see members built at\n"
    "import time), checked against the compiled module's constants by a\n"
    "test; evidence dicts typed; errno may be None.\n",
    "7bb5ebb": "tests: the THP-off boot asks the anonymous kinds; fixup's own HANGs\n\n"
    "An undeclared stock image now also answers cow-leak on hugetlb (a LEAK\n"
    "on every kernel measured), which is not what the THP test is about.\n"
    "The fixup model's only HANG is release-vs-gup, its 6.1.192 base's.\n",
    "merge": "Merge shmem: shmem and hugetlb kinds, PAGEMAP_SCAN, shared-memory defects (#29)\n",
}
BAD = {
    "c1c01e8": (
        "scenarios, kbuild: a mistyped scenario or recipe name gets a did-you-mean\n\n"
        "`run cow-lek` said only 'unknown scenario'. The registry's KeyError now\n",
        ["73 characters"],
    ),
    "0af046f": (
        "run: drop the in-memory Python image: measured, it costs more than it saves\n\n"
        "bench_first_verdict with the session-start checkout as the baseline,\n",
        ["75 characters"],
    ),
    "45ac32e": (
        "recipes declare release-vs-gup; list says each scenario's defect and fix\n\n"
        "stock and the 6.1-based models (their patches leave userfaultfd_release\n",
        ["not `stage: summary`"],
    ),
    "2486989": (
        "Exit 1 is every undeclared verdict of verdicts.KERNEL_PROBLEMS, selftest FAILs included: "
        "README's exit table and exitcodes' comment say so\n",
        ["characters, at most 72", "not `stage: summary`"],
    ),
}


def _hook(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    message = tmp_path / "COMMIT_EDITMSG"
    message.write_text(text)
    return subprocess.run([sys.executable, str(HOOK), str(message)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("commit", sorted(GOOD))
def test_well_formed_messages_pass(tmp_path, commit):
    proc = _hook(tmp_path, GOOD[commit])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("commit", sorted(BAD))
def test_bad_messages_fail_with_the_reason(tmp_path, commit):
    text, reasons = BAD[commit]
    proc = _hook(tmp_path, text)
    assert proc.returncode == 1, proc.stderr
    for reason in reasons:
        assert reason in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == len(reasons), proc.stderr


def test_what_git_strips_is_not_judged_and_a_body_needs_its_blank_line(tmp_path):
    subject = GOOD["7bb5ebb"].splitlines()[0]
    editor = (
        f"\n{subject}\n\nwhy\n# Please enter the commit message for your changes.\n"
        "# ------------------------ >8 ------------------------\n" + "x" * 200 + "\n"
    )
    assert _hook(tmp_path, editor).returncode == 0
    assert _hook(tmp_path, f"fixup! {subject}\n").returncode == 0
    proc = _hook(tmp_path, f"{subject}\nwhy, with no blank line\n")
    assert proc.returncode == 1 and "blank line" in proc.stderr, proc.stderr
    assert _hook(tmp_path, "# only a comment\n").returncode == 1


def test_pre_commit_installs_it_and_git_runs_it(tmp_path):
    """The project's .pre-commit-config.yaml, installed with `pre-commit install`: git refuses a bad subject."""
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which("pre-commit")
    if pre_commit is None:
        pytest.skip("pre-commit is not installed (pip install -e '.[lint]')")
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".pre-commit-config.yaml", repo)
    shutil.copy(HOOK, repo / ".ci")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }

    def run(*argv):
        return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=120)

    assert run("git", "init", "-q").returncode == 0
    installed = run(pre_commit, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (repo / ".git" / "hooks" / "commit-msg").exists(), installed.stdout
    # the config staged (pre-commit insists), the hook script left untracked: no Python file is staged, so
    # the pre-commit stage's hooks (ruff, mypy, layout) have nothing to check here and only commit-msg judges
    assert run("git", "add", ".pre-commit-config.yaml").returncode == 0
    refused = run("git", "commit", "-q", "-m", BAD["0af046f"][0])
    assert refused.returncode != 0 and "75 characters" in refused.stdout + refused.stderr, refused
    assert run("git", "rev-parse", "-q", "--verify", "HEAD").returncode != 0, "nothing committed"
    taken = run("git", "commit", "-q", "-m", GOOD["f757c10"])
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert run("git", "log", "--format=%s").stdout.strip() == GOOD["f757c10"].splitlines()[0]
