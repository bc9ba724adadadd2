# SPDX-License-Identifier: GPL-2.0-only
"""The git side of a bisection: checks on the tree, where HEAD was, commit subjects, bisect results."""

import re
import subprocess
from pathlib import Path
from typing import Optional

from uffdprobe.kbuild.errors import BadInput, SetupError

GIT_TIMEOUT = 600
#: git bisect's terms (old, new): to the culprit, the old commits are good and the new bad; to the fix
#: (--find-fix), the old commits are broken (have the defect) and the new ones fixed.
TERMS = {False: ("good", "bad"), True: ("broken", "fixed")}


def run(tree, *args, timeout: float = GIT_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    """git -C tree ARGS, bounded; SetupError with git's message when it fails and check is set."""
    try:
        done = subprocess.run(
            ["git", "-C", str(tree), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise SetupError("git is not installed: apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"git {' '.join(args[:2])} took longer than {timeout} s in {tree}") from None
    if check and done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SetupError(f"git {' '.join(args[:2])} failed in {tree}: {last[0]}")
    return done


def git_dir(tree) -> Path:
    """The tree's .git directory (absolute); BadInput when `tree` is not a git work tree."""
    done = run(tree, "rev-parse", "--absolute-git-dir", check=False)
    if done.returncode != 0:
        raise BadInput(f"--tree {tree} is not a git work tree: give the top of a kernel git checkout")
    return Path(done.stdout.strip())


def check_clean(tree) -> None:
    """BadInput when tracked files have uncommitted changes or a bisection is already under way."""
    if (git_dir(tree) / "BISECT_START").exists():
        raise BadInput(f"{tree} is already bisecting: finish it or run 'git -C {tree} bisect reset'")
    dirty = run(tree, "status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    if dirty:
        raise BadInput(
            f"{tree} has uncommitted changes ({dirty[0].strip()}, ...): commit or stash them ('git -C {tree} stash')"
        )


def resolve(tree, ref: str, what: str) -> str:
    """The commit id of REF; BadInput naming the option when it is not a commit."""
    done = run(tree, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if done.returncode != 0:
        raise BadInput(f"{what} {ref!r} is not a commit in {tree}: check 'git -C {tree} log --oneline'")
    return done.stdout.strip()


def is_ancestor(tree, older: str, newer: str) -> bool:
    """True when `older` is an ancestor of `newer`."""
    return run(tree, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def where(tree) -> str:
    """The branch HEAD is on (refs/heads/...), or the commit id when detached."""
    done = run(tree, "symbolic-ref", "--quiet", "HEAD", check=False)
    return done.stdout.strip() if done.returncode == 0 else run(tree, "rev-parse", "HEAD").stdout.strip()


def head(tree) -> str:
    """The commit id checked out now."""
    return run(tree, "rev-parse", "HEAD").stdout.strip()


def subject(tree, commit: str) -> str:
    """The first line of a commit's message."""
    return run(tree, "log", "-1", "--format=%s", commit, check=False).stdout.strip()


def count_between(tree, good: str, bad: str) -> int:
    """Commits in good..bad (the candidates a bisection starts with)."""
    return int(run(tree, "rev-list", "--count", f"{good}..{bad}").stdout.strip() or 0)


def parse_outcome(output: str, term_new: str = "bad") -> tuple:
    """(first commit of the new term or None, candidate commits) from `git bisect run` output."""
    m = re.search(rf"^([0-9a-f]{{40}}) is the first {term_new} commit", output, re.M)
    if m:
        return m.group(1), [m.group(1)]
    m = re.search(rf"The first {term_new} commit could be any of:\n((?:[0-9a-f]{{40}}\n)+)", output)
    if m:
        return None, m.group(1).split()
    return None, []


def bisecting(tree) -> bool:
    """True while the tree has bisect state."""
    return (git_dir(tree) / "BISECT_START").exists()


def reset(tree, original: Optional[str]) -> None:
    """`git bisect reset` (back to the branch or commit bisect start recorded); bounded, never raises."""
    try:
        if bisecting(tree):
            run(tree, "bisect", "reset", check=False)
        if original and where(tree) != original:
            target = original[len("refs/heads/") :] if original.startswith("refs/heads/") else original
            run(tree, "checkout", "--quiet", target, check=False)
    except Exception:  # cleanup must not hide the error that brought us here
        pass
