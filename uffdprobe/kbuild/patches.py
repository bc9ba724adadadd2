# SPDX-License-Identifier: GPL-2.0-only
"""Patch series: read patch files (patchtext.py), apply them in a staging tree.

A series entry may be a unified diff, a git format-patch mail, an mbox of several patches, a
saved mailing-list page, or a series file naming such files in order (quilt's `series`).

A series is applied to copies of only the files it touches, each patch checked with
`patch --dry-run` before it is applied, so a failure names the patch, file and hunk
and nothing in the build tree has changed yet.
"""

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from uffdprobe.osutil.files import sha256_file
from . import patchtext
from .errors import BadInput, PatchDoesNotApply, SetupError

PATCH_TIMEOUT = 120
PATCH_ARGS = ["patch", "-p1", "--forward", "--force", "--no-backup-if-mismatch", "--reject-file=-"]


@dataclass(frozen=True)
class Patch:
    """One patch: the file it came from, its content hash, subject, the files it touches and its diff.

    `part` is "" for a file holding one patch, else "i/n" for the i-th patch of an mbox of n."""

    path: Path
    sha256: str
    subject: str
    files: tuple
    text: str = ""
    part: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.name} [{self.part}]" if self.part else self.path.name


SERIES_DEPTH = 4


def load_series(paths) -> list:
    """Every patch of the given files in order: mboxes split, series files expanded; BadInput otherwise."""
    series = []
    for path in paths:
        series += _load_entry(Path(path), 0)
    return series


def load(path) -> Patch:
    """The one patch of a file; BadInput when it is missing, holds no diff or holds several."""
    found = load_series([path])
    if len(found) != 1:
        raise BadInput(f"patch {path} holds {len(found)} patches; give it as a series entry")
    return found[0]


def _load_entry(path: Path, depth: int) -> list:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise BadInput(
            f"patch {path} cannot be read ({exc.strerror}): make it readable (chmod a+r {path}) "
            "or give another unified diff or mbox file"
        ) from None
    found = patchtext.pieces(text)
    if not found:
        named = _series_names(text, path)
        if named and depth < SERIES_DEPTH:
            return [p for name in named for p in _load_entry(name, depth + 1)]
        raise BadInput(
            f"patch {path} is not a patch: it has no unified diff ('--- a/FILE' then '+++ b/FILE' "
            "then @@ hunks) and is not a series file naming patches; give a 'diff -u', "
            "'git diff', 'git format-patch', mbox or saved mailing-list page"
        )
    for _, diff in found:
        for name in touched_files(diff):
            why = _escapes(name)
            if why:
                raise _outside(path, name, why)
    if len(found) == 1:  # one patch per file: the file's hash, as before mboxes were split
        subject, diff = found[0]
        return [Patch(path.resolve(), sha256_file(path), subject or path.stem, tuple(touched_files(diff)), diff)]
    return [
        Patch(
            path.resolve(),
            hashlib.sha256(f"{subject}\n{diff}".encode()).hexdigest(),
            subject or f"{path.stem} {i}",
            tuple(touched_files(diff)),
            diff,
            f"{i}/{len(found)}",
        )
        for i, (subject, diff) in enumerate(found, 1)
    ]


def _series_names(text: str, path: Path) -> list:
    """The files a series file names (one per line, '#' comments, quilt's -pN options ignored), all
    existing; [] when it is not one."""
    names = [line.split()[0] for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    files = [(path.parent / name) for name in names]
    if not files or not all(f.is_file() and f.resolve() != path.resolve() for f in files):
        return []
    return files


def touched_files(text: str) -> list:
    """Paths (one leading component stripped, as with -p1) named by the diff headers, in order."""
    files = []
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("--- ") and lines[i + 1].startswith("+++ "):
            for header in (line[4:], lines[i + 1][4:]):
                name = _strip1(header.split("\t")[0].strip())
                if name and name not in files:
                    files.append(name)
        elif line.startswith("diff --git ") and len(line.split()) == 4:  # also headers with no hunks
            for header in line.split()[2:]:
                name = _strip1(header)
                if name and name not in files:
                    files.append(name)
        elif line.startswith(("rename from ", "rename to ")):
            name = line.split(" ", 2)[2].strip()
            if name not in files:
                files.append(name)
    return files


def _escapes(name: str):
    """Why a header path (as patch -p1 sees it) could reach outside the tree, or None."""
    if name.startswith("/"):
        return "is absolute"
    if ".." in PurePosixPath(name).parts:
        return "contains '..'"
    return None


def _outside(patch: Path, name: str, why: str) -> BadInput:
    return BadInput(
        f"patch {patch}: header path {name!r} {why}; a patch may only touch files inside the "
        "kernel source tree: fix that header (paths look like a/mm/gup.c)"
    )


def _strip1(name: str) -> str:
    if name == "/dev/null" or "/" not in name:
        return ""
    return name.split("/", 1)[1]


def stage(series: list, pristine: Path, stage_dir: Path) -> dict:
    """Apply `series` to copies of the files it touches; returns relpath -> staged path (None: deleted)."""
    touched = []
    for patch in series:
        touched += [f for f in patch.files if f not in touched]
        for rel in patch.files:  # a symlink in the tree must not lead a patch out of it either
            if not _inside(pristine / rel, pristine) or not _inside(stage_dir / rel, stage_dir):
                raise _outside(patch.path, rel, "resolves outside the source tree")
    for rel in touched:
        src = pristine / rel
        if src.is_file():
            dest = stage_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    for number, patch in enumerate(series, 1):
        check = _patch(patch, stage_dir, dry_run=True)
        if check.returncode != 0:
            raise _failure(patch, number, len(series), check.stdout + check.stderr)
        done = _patch(patch, stage_dir, dry_run=False)
        if done.returncode != 0:  # dry run passed: should not happen, but say so
            raise _failure(patch, number, len(series), done.stdout + done.stderr)
    return {rel: (stage_dir / rel if (stage_dir / rel).is_file() else None) for rel in touched}


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _patch(patch: Patch, where: Path, dry_run: bool) -> subprocess.CompletedProcess:
    argv = PATCH_ARGS + (["--dry-run"] if dry_run else []) + ["-d", str(where)]
    try:
        return subprocess.run(argv, input=patch.text, capture_output=True, text=True, timeout=PATCH_TIMEOUT)
    except FileNotFoundError:
        raise SetupError("GNU patch is not installed: apt-get install patch") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"patch {patch.path} took longer than {PATCH_TIMEOUT} s to apply") from None


def _failure(patch: Patch, number: int, total: int, output: str) -> PatchDoesNotApply:
    """One line: which patch, the first file and hunk that failed, and what to do."""
    current = hunk = None
    for line in output.splitlines():
        m = re.match(r"(?:checking|patching) file (.+)$", line)
        if m:
            current = m.group(1).strip().strip("'")
            continue
        m = re.match(r"Hunk #(\d+) FAILED at (\d+)", line)
        if m:
            hunk = f"hunk #{m.group(1)} (at line {m.group(2)}) FAILED"
            break
        m = re.match(r"can't find file to patch at input line (\d+)", line)
        if m:
            current = _file_at(patch.text, int(m.group(1))) or "?"
            hunk = "file not found in the source tree"
            break
        if "Reversed (or previously applied) patch detected" in line:
            hunk = "already applied (reversed patch detected)"
            break
        if "malformed patch" in line or "Only garbage was found" in line:
            hunk = line.strip()
            break
    where = f"{current or '?'}: {hunk or 'does not apply'}"
    part = f" [{patch.part}]" if patch.part else ""
    msg = (
        f"patch {number}/{total} {patch.path}{part} ({patch.subject}) does not apply: {where}; "
        "rebase it onto this source or drop it from the series"
    )
    return PatchDoesNotApply(msg, patch=patch.path, file=current, hunk=hunk)


def _file_at(text: str, input_line: int) -> str:
    """The file of the last '+++ ' header at or before `input_line` of the diff text."""
    found = ""
    for line in text.splitlines()[:input_line]:
        if line.startswith(("+++ ", "--- ")):
            found = _strip1(line[4:].split("\t")[0].strip()) or found
    return found
