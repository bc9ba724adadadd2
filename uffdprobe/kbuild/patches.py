"""Patch series: read unified diffs and git format-patch/mbox files, apply them in a staging tree.

A series is applied to copies of only the files it touches, each patch checked with
`patch --dry-run` before it is applied, so a failure names the patch, file and hunk
and nothing in the build tree has changed yet.
"""
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from uffdprobe.osutil.files import sha256_file
from .errors import BadInput, PatchDoesNotApply, SetupError

PATCH_TIMEOUT = 120
PATCH_ARGS = ["patch", "-p1", "--forward", "--force", "--no-backup-if-mismatch", "--reject-file=-"]


@dataclass(frozen=True)
class Patch:
    """One patch file: its path, content hash, subject line and the files it touches."""

    path: Path
    sha256: str
    subject: str
    files: tuple

    @property
    def name(self) -> str:
        return self.path.name


def load(path) -> Patch:
    """Read a patch file; BadInput when it is missing or holds no diff."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise BadInput(f"patch {path} cannot be read ({exc.strerror}): make it readable (chmod a+r {path}) "
                       "or give another unified diff or mbox file") from None
    files = touched_files(text)
    if not files:
        raise BadInput(f"patch {path} is not a patch: it has no unified diff ('--- a/FILE' then '+++ b/FILE'); "
                       "give a 'diff -u', 'git diff' or 'git format-patch' file")
    for name in files:
        why = _escapes(name)
        if why:
            raise _outside(path, name, why)
    m = re.search(r"^Subject:\s*(.*)$", text, re.M)
    subject = m.group(1).strip() if m else path.stem
    return Patch(path.resolve(), sha256_file(path), subject, tuple(files))


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
        elif line.startswith("rename from ") or line.startswith("rename to "):
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
    return BadInput(f"patch {patch}: header path {name!r} {why}; a patch may only touch files inside the "
                    "kernel source tree: fix that header (paths look like a/mm/gup.c)")


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
    argv = PATCH_ARGS + (["--dry-run"] if dry_run else []) + ["-d", str(where), "-i", str(patch.path)]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=PATCH_TIMEOUT)
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
            current = _file_at(patch.path, int(m.group(1))) or "?"
            hunk = "file not found in the source tree"
            break
        if "Reversed (or previously applied) patch detected" in line:
            hunk = "already applied (reversed patch detected)"
            break
        if "malformed patch" in line or "Only garbage was found" in line:
            hunk = line.strip()
            break
    where = f"{current or '?'}: {hunk or 'does not apply'}"
    msg = (f"patch {number}/{total} {patch.path} does not apply: {where}; "
           "rebase it onto this source or drop it from the series")
    return PatchDoesNotApply(msg, patch=patch.path, file=current, hunk=hunk)


def _file_at(path: Path, input_line: int) -> str:
    """The file of the last '+++ ' header at or before `input_line` of the patch."""
    found = ""
    with open(path, errors="replace") as f:
        for number, line in enumerate(f, 1):
            if number > input_line:
                break
            if line.startswith("+++ ") or line.startswith("--- "):
                found = _strip1(line[4:].split("\t")[0].strip()) or found
    return found
