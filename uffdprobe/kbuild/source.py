# SPDX-License-Identifier: GPL-2.0-only
"""Kernel sources: an extracted tree, a tarball, or a git tree at a ref; identity and a pristine copy."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import cache
from . import make as kbuild_make
from .errors import NO_SPACE_TEXT, BadInput, SetupError, no_space
from uffdprobe.osutil import files

DEFAULT_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
GIT_TIMEOUT = 600
TAR_TIMEOUT = 900
TARBALL_SUFFIXES = (".tar", ".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar.zst")


@dataclass(frozen=True)
class SourceSpec:
    """What the user named: kind is "tree", "tarball" or "git"; ref only for git."""

    kind: str
    location: str
    ref: str = ""

    def __str__(self) -> str:
        return f"{self.location}@{self.ref}" if self.kind == "git" else self.location


@dataclass(frozen=True)
class Source:
    """A materialised source: identity (dict), its short id, the pristine tree and its version."""

    spec: SourceSpec
    identity: dict
    srcid: str
    tree: Path
    version: str


def parse_spec(text: str = "") -> SourceSpec:
    """Classify a --source argument; empty means Debian's linux-source-6.1 tarball."""
    text = str(text or DEFAULT_TARBALL)
    if "@" in text and not os.path.exists(text):
        location, ref = text.rsplit("@", 1)
        if not ref:
            raise BadInput(f"source {text!r} has an empty ref: write PATH_OR_URL@REF (a branch, tag or commit)")
        if "://" not in location and not os.path.isdir(location):
            raise BadInput(f"git source {location!r} does not exist: give a git checkout or URL before @REF")
        return SourceSpec("git", location, ref)
    path = Path(text)
    if not path.exists():
        raise BadInput(
            f"kernel source {text} does not exist: give an extracted tree, a tarball "
            f"(e.g. {DEFAULT_TARBALL}) or a git tree as PATH@REF"
        )
    if path.is_dir():
        return SourceSpec("tree", str(path.resolve()))
    if path.name.endswith(TARBALL_SUFFIXES):
        return SourceSpec("tarball", str(path.resolve()))
    raise BadInput(f"kernel source {text} is neither a directory nor a tarball ({', '.join(TARBALL_SUFFIXES)})")


def identify(spec: SourceSpec, root: Path) -> dict:
    """A content identity for the source: tarball sha256, tree fingerprint, or git commit."""
    if spec.kind == "tarball":
        return {"kind": "tarball", "name": Path(spec.location).name, "sha256": _tarball_sha(Path(spec.location), root)}
    if spec.kind == "tree":
        check_kernel_tree(Path(spec.location), str(spec))
        return {"kind": "tree", "path": spec.location, "fingerprint": _tree_fingerprint(Path(spec.location))}
    return {"kind": "git", "repo": spec.location, "commit": _git_commit(spec)}


def materialize(spec: SourceSpec, root: Path, progress: bool = True) -> Source:
    """Identify the source and make sure its pristine tree exists under sources/ (extracting once)."""
    identity = identify(spec, root)
    srcid = cache.sha256_json(identity)[:16]
    final = root / "sources" / srcid
    with cache.Lock(root, f"src-{srcid}", what=f"source {spec}"):
        if not (final / cache.COMPLETE).exists():
            cache.remove_tree(final)
            _extract(spec, identity, final, progress)
    return Source(spec, identity, srcid, final / "tree", kernel_version(final / "tree"))


def _extract(spec: SourceSpec, identity: dict, final: Path, progress: bool) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        if progress:
            print(f"kbuild: unpacking {spec} into the cache", file=sys.stderr)
        staging = tmp / "unpack"
        staging.mkdir()
        if spec.kind == "tarball":
            _run(
                ["tar", "-xf", spec.location, "-C", str(staging)],
                TAR_TIMEOUT,
                f"unpacking {spec.location}",
                final.parent,
            )
        elif spec.kind == "tree":
            _pipe_copy(Path(spec.location), staging)
        else:
            _git_archive(spec, identity["commit"], staging)
        tree = _single_top(staging)
        check_kernel_tree(tree, str(spec))
        os.rename(tree, tmp / "tree")
        shutil.rmtree(staging, ignore_errors=True)
        (tmp / "identity.json").write_text(json.dumps(identity, indent=2) + "\n")
        (tmp / cache.COMPLETE).write_text("pristine\n")
        os.rename(tmp, final)
    except BaseException:
        cache.remove_tree(tmp)
        raise


def _single_top(staging: Path) -> Path:
    """A tarball usually holds one top directory (linux-source-6.1/); a tree or git archive does not."""
    children = list(staging.iterdir())
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return staging


def check_kernel_tree(tree: Path, what: str) -> None:
    """Raise BadInput unless `tree` looks like a Linux source tree the builder can use."""
    needed = ["Makefile", "Kconfig", "scripts/kconfig/merge_config.sh", "arch/x86/Kconfig"]
    missing = [n for n in needed if not (tree / n).exists()]
    if missing or not re.search(r"^VERSION\s*=", _read(tree / "Makefile"), re.M):
        raise BadInput(
            f"{what} is not a Linux kernel source tree (no {', '.join(missing) or 'VERSION in Makefile'}):"
            " point --source at the top of a kernel tree"
        )
    if (tree / ".config").exists() or (tree / "include" / "config").exists():
        raise BadInput(
            f"{what} has been configured in place (.config): out-of-tree builds need a clean"
            " tree; run 'make mrproper' there or use a fresh checkout"
        )


def kernel_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL+EXTRAVERSION from the top Makefile."""
    text = _read(tree / "Makefile")
    parts = {}
    for name in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        m = re.search(rf"^{name}\s*=[ \t]*(\S*)", text, re.M)
        parts[name] = m.group(1) if m else ""
    return f"{parts['VERSION']}.{parts['PATCHLEVEL']}.{parts['SUBLEVEL'] or 0}{parts['EXTRAVERSION']}"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tarball_sha(path: Path, root: Path) -> str:
    """sha256 of a tarball, remembered by (path, size, mtime, inode) so a cache hit does not re-read it."""
    st = path.stat()
    stamp = f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    memo_path = root / "source-hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if stamp not in memo:
        memo[stamp] = files.sha256_file(path)
        files.write_atomic(memo_path, json.dumps(memo, indent=1).encode())
    return memo[stamp]


def _tree_fingerprint(tree: Path) -> str:
    """sha256 over (path, size, mtime) of every file outside .git: changes when the tree is edited."""
    rows = []
    for dirpath, dirnames, names in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(names):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rows.append(f"{os.path.relpath(full, tree)}\0{st.st_size}\0{st.st_mtime_ns}")
    return cache.sha256_json(rows)


def _pipe_copy(src: Path, dest: Path) -> None:
    """Copy a tree without its .git directory (tar | tar keeps modes and mtimes)."""
    _untar_from(["tar", "-C", str(src), "--exclude=./.git", "-cf", "-", "."], dest, f"copying {src}")


def _untar_from(producer_argv: list, dest: Path, what: str) -> None:
    """Run a command that writes a tar stream and unpack that stream into dest, bounded as one pipeline."""
    pipeline = 'set -o pipefail; dest=$1; shift; "$@" | tar -C "$dest" -xf -'
    _run(["bash", "-c", pipeline, "untar", str(dest)] + producer_argv, TAR_TIMEOUT, what, dest.parent)


def _git_commit(spec: SourceSpec) -> str:
    """Resolve REF to a commit id in a local git tree (BadInput when it is not a commit there)."""
    if "://" in spec.location:
        raise BadInput(f"git URL {spec.location} is not supported offline: clone it and give PATH@REF")
    try:
        out = subprocess.run(
            ["git", "-C", spec.location, "rev-parse", "--verify", "--quiet", f"{spec.ref}^{{commit}}"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
    except FileNotFoundError:
        raise SetupError("git is not installed: apt-get install git") from None
    if out.returncode != 0:
        raise BadInput(
            f"git ref {spec.ref!r} is not a commit in {spec.location}: check "
            f"'git -C {spec.location} log --oneline {spec.ref}'"
        )
    return out.stdout.strip()


def _git_archive(spec: SourceSpec, commit: str, dest: Path) -> None:
    _untar_from(
        ["git", "-C", spec.location, "archive", "--format=tar", commit],
        dest,
        f"git archive {commit} in {spec.location}",
    )


def _run(argv: list, timeout: float, what: str, disk: Path) -> None:
    """Run a helper tool (tar) with a bound; SetupError naming `what` when it fails, NoSpace naming `disk`
    as soon as it reports a full disk (it is stopped then: tar would go on through the whole archive)."""
    tail = []

    def on_line(line: str) -> None:
        if NO_SPACE_TEXT in line:
            raise no_space(disk, what)
        tail[:] = (tail + [line.strip()])[-3:]

    try:
        status, timed_out = kbuild_make.run_watched(argv, on_line, timeout)
    except FileNotFoundError:
        raise SetupError(f"{argv[0]} is not installed (needed for {what})") from None
    if timed_out:
        raise SetupError(f"{what} took longer than {timeout} s")
    if status != 0:
        errors = [line for line in tail if "Exiting with failure" not in line] or tail or ["no output"]
        raise SetupError(f"{what} failed: {errors[-1][:200]}")
