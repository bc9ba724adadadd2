# SPDX-License-Identifier: GPL-2.0-only
"""A git history of Debian's 6.1 source for bisection tests: a cached import, then scripted commits.

The import (about 80k files) is committed once into a bare repository under the cache, keyed by
the tarball's sha256, reading the builder's pristine tree without writing to it; every history is
a `git clone --shared` of it, so the cached import is never touched.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from uffdprobe.kbuild import cache as kbuild_cache, source as kbuild_source
from uffdprobe.kbuild.errors import SetupError
from uffdprobe.osutil import datafiles

GIT_TIMEOUT = 1800
AUTHOR = ["-c", "user.name=uffdprobe", "-c", "user.email=uffdprobe@localhost"]
FIXED_DATE = "2020-06-01T12:00:00+0000"


def git(repo, *args, timeout: float = GIT_TIMEOUT, check: bool = True, env=None) -> str:
    """Run git in `repo` (bounded); SetupError with git's last line when it fails and check is set."""
    full_env = dict(os.environ, GIT_AUTHOR_DATE=FIXED_DATE, GIT_COMMITTER_DATE=FIXED_DATE, **(env or {}))
    done = subprocess.run(
        ["git", *AUTHOR, "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )
    if check and done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SetupError(f"git {' '.join(args[:2])} in {repo} failed: {last[0]}")
    return done.stdout


def cached_import(cache_root=None, tarball=None, progress: bool = True) -> Path:
    """A bare repository whose `import` branch is the unpacked tarball as one commit (made once)."""
    root = Path(cache_root) if cache_root else kbuild_cache.default_root()
    source = kbuild_source.materialize(kbuild_source.parse_spec(str(tarball or "")), root, progress)
    repos = root.parent / "bisect-imports"
    final = repos / f"{source.srcid}.git"
    repos.mkdir(parents=True, exist_ok=True)
    with kbuild_cache.Lock(repos, f"import-{source.srcid}", what=f"git import of {source.tree}"):
        if (final / "import.complete").exists():
            return final
        kbuild_cache.remove_tree(final)
        started = time.monotonic()
        if progress:
            print(f"bisect: committing {source.tree} into {final} (once; a few minutes)", file=sys.stderr)
        git(repos, "init", "--quiet", "--bare", "--initial-branch=import", str(final))
        # Loose objects compressed lightly: the import is written once and read by clones on this disk.
        work_env = {"GIT_DIR": str(final), "GIT_WORK_TREE": str(source.tree)}
        git(source.tree, "-c", "core.looseCompression=1", "add", "--all", "--force", ".", env=work_env)
        git(source.tree, "commit", "--quiet", "-m", f"Import linux {source.version} ({source.spec})", env=work_env)
        (final / "index").unlink(missing_ok=True)
        (final / "import.complete").write_text(f"{time.monotonic() - started:.1f} s\n")
    return final


PATCHES = datafiles.vm_images() / "patches"
MODEL_57 = sorted((PATCHES / "model-5.7").glob("*.patch"))
MODEL_58 = sorted((PATCHES / "model-5.8").glob("*.patch"))
BROKEN_LINE = "this line deliberately breaks the build;\n"


def make_history(dest: Path, import_repo: Path, branch: str = "main") -> dict:
    """Clone the import into `dest` and commit the scripted history; returns {role: commit id}.

    Roles, oldest first: good (the model-5.7 patches), edit-compiled, culprit (forced COW),
    broken (does not compile), fixed (the build), edit-docs, bad (another compiled edit); then, on
    branch `fixes` off bad: fix-edit-before, fix (the forced COW undone), fix-edit-after.
    """
    git(dest.parent, "clone", "--quiet", "--shared", "--branch", "import", str(import_repo), str(dest))
    git(dest, "checkout", "--quiet", "-b", branch)
    roles = {}
    git(dest, "am", "--quiet", *map(str, MODEL_57))
    roles["good"] = _head(dest)
    roles["edit-compiled"] = _edit(
        dest,
        "mm/mmap.c",
        "/* uffdprobe bisect test: a comment in a compiled file */\n",
        "mm: a comment in mmap.c (unrelated edit)",
    )
    git(dest, "am", "--quiet", *map(str, MODEL_58))
    roles["culprit"] = _head(dest)
    roles["broken"] = _edit(dest, "mm/mmap.c", BROKEN_LINE, "mm: break the build (a syntax error in mmap.c)")
    text = (dest / "mm/mmap.c").read_text()
    roles["fixed"] = _write(dest, "mm/mmap.c", text.replace(BROKEN_LINE, ""), "mm: fix the build again")
    roles["edit-docs"] = _edit(
        dest,
        "Documentation/mm/index.rst",
        "\n.. uffdprobe bisect test: a docs-only edit\n",
        "docs: an unrelated documentation edit",
    )
    roles["bad"] = _edit(
        dest,
        "kernel/fork.c",
        "/* uffdprobe bisect test: another compiled-file comment */\n",
        "fork: a comment in fork.c (unrelated edit)",
    )
    roles.update(_fix_branch(dest, roles["edit-compiled"], roles["bad"], FIX_BRANCH))
    git(dest, "checkout", "--quiet", branch)
    return roles


FIX_BRANCH = "fixes"


def _fix_branch(dest: Path, before_culprit: str, start: str, branch: str) -> dict:
    """Branch `branch` off `start` (the defect is there) with, oldest first: an unrelated compiled edit
    (fix-edit-before), the fix (mm/gup.c as it was before the culprit, one commit), another compiled edit
    (fix-edit-after, the branch's head)."""
    git(dest, "checkout", "--quiet", "-b", branch, start)
    roles = {
        "fix-edit-before": _edit(
            dest,
            "mm/mmap.c",
            "/* uffdprobe bisect test: before the fix */\n",
            "mm: a comment in mmap.c before the fix (unrelated edit)",
        )
    }
    git(dest, "checkout", "--quiet", before_culprit, "--", "mm/gup.c")
    git(dest, "commit", "--quiet", "-m", "mm/gup: fix: stop breaking COW for read GUP", "--", "mm/gup.c")
    roles["fix"] = _head(dest)
    roles["fix-edit-after"] = _edit(
        dest,
        "kernel/fork.c",
        "/* uffdprobe bisect test: after the fix */\n",
        "fork: a comment in fork.c after the fix (unrelated edit)",
    )
    return roles


def _edit(repo: Path, rel: str, append: str, subject: str) -> str:
    return _write(repo, rel, (repo / rel).read_text() + append, subject)


def _write(repo: Path, rel: str, text: str, subject: str) -> str:
    (repo / rel).write_text(text)
    git(repo, "commit", "--quiet", "-m", subject, "--", rel)
    return _head(repo)


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()
