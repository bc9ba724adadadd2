# SPDX-License-Identifier: GPL-2.0-only
"""Patch files as developers get them, read and applied with GNU patch to the real 6.1 source.

The shipped model-5.8-break-cow series (four git format-patch mails) as one mbox and as a
series file; the seed's saved lore page of "[PATCH v3] mm/gup: Allow real explicit breaking
of COW", as text and as HTML, against the shipped 6.1 port of that patch.
"""

import html
import shutil
from pathlib import Path

import pytest

from uffdprobe.kbuild import cache, patches, patchtext, recipes, source
from uffdprobe.kbuild.errors import BadInput, PatchDoesNotApply

SEED = Path("/work/shared/seed/000_39b9ee767f223ddd.txt")
SERIES = recipes.load("model-5.8-break-cow").patches  # 0001..0004, git format-patch files
SEED_SUBJECT = "[PATCH v3] mm/gup: Allow real explicit breaking of COW"


@pytest.fixture(scope="module")
def pristine():
    """Debian's 6.1 tree as the kernel cache holds it (unpacked once, never written here)."""
    if not source.DEFAULT_TARBALL.exists():
        pytest.skip(f"{source.DEFAULT_TARBALL} missing: apt-get install linux-source-6.1")
    return source.materialize(source.parse_spec(""), cache.default_root(), progress=False).tree


def _staged(series, pristine, where: Path) -> dict:
    where.mkdir()
    return {rel: (p.read_bytes() if p else None) for rel, p in patches.stage(series, pristine, where).items()}


def _changed_lines(diff: str, path: str) -> list:
    """The +/- lines of one file's part of a diff."""
    out, inside = [], False
    for line in diff.splitlines():
        if line.startswith("+++ "):
            inside = line[4:].split("\t")[0].strip().endswith("/" + path)
        elif inside and line[:1] in "+-" and not line.startswith("--- "):
            out.append(line)
    return out


def test_shipped_patches_read_as_their_own_diff():
    for recipe in recipes.names():
        for patch in patches.load_series(recipes.load(recipe).patches):
            text = patch.path.read_text()
            end = text.rindex("\n-- \n") + 1 if "\n-- \n" in text else len(text)  # format-patch's signature
            start = text.index("diff --git") if "diff --git" in text else text.index("\n--- ") + 1  # or a plain diff
            body = text[start:end]
            assert patch.text == body, patch.name
            assert patch.subject.startswith("[PATCH") and patch.files


def test_mbox_of_the_series_is_split_and_applied_in_order(pristine, tmp_path):
    mbox = tmp_path / "break-cow.mbox"
    mbox.write_text("".join(p.read_text() for p in SERIES))
    split = patches.load_series([mbox])
    one_by_one = patches.load_series(SERIES)
    assert [p.subject for p in split] == [p.subject for p in one_by_one]
    assert [p.subject[:12] for p in split] == ["[PATCH 1/4] ", "[PATCH 2/4] ", "[PATCH 3/4] ", "[PATCH 4/4] "]
    assert [p.files for p in split] == [p.files for p in one_by_one]
    assert [p.name for p in split] == [f"break-cow.mbox [{i}/4]" for i in range(1, 5)]
    assert _staged(split, pristine, tmp_path / "a") == _staged(one_by_one, pristine, tmp_path / "b")
    # out of order, patch 4 fails where its hunk needs patch 3's lines, and says which mail it is
    reordered = tmp_path / "reordered.mbox"
    reordered.write_text("".join(p.read_text() for p in SERIES[:2] + SERIES[3:] + SERIES[2:3]))
    with pytest.raises(PatchDoesNotApply, match=r"patch 3/4 .*reordered.mbox \[3/4\] \(\[PATCH 4/4\].*mm/gup.c"):
        _staged(patches.load_series([reordered]), pristine, tmp_path / "c")


def test_series_file_names_patches_in_order(pristine, tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    for p in SERIES:
        shutil.copy(p, folder)
    (folder / "series").write_text("# quilt series\n" + "".join(f"{p.name} -p1\n" for p in SERIES))
    from_series = patches.load_series([folder / "series"])
    assert [p.sha256 for p in from_series] == [p.sha256 for p in patches.load_series(SERIES)]
    assert _staged(from_series, pristine, tmp_path / "a") == _staged(
        patches.load_series(SERIES), pristine, tmp_path / "b"
    )
    (folder / "series").write_text("0001-missing.patch\n")
    with pytest.raises(BadInput, match="not a patch.*not a series file"):
        patches.load_series([folder / "series"])


def test_lore_page_parses_to_the_posted_diff():
    if not SEED.exists():
        pytest.skip(f"{SEED} missing")
    page = patches.load(SEED)
    assert page.subject == SEED_SUBJECT
    assert page.files == ("include/linux/mm.h", "mm/gup.c", "mm/huge_memory.c", "mm/memory.c")
    assert (
        page.text.count("\n@@ ") == SEED.read_text().count("\n@@ ") == 15
        and "Thread overview" not in page.text
        and "\n-- \n" not in page.text
    )
    # mm/gup.c is the one file the 6.1 port changes line for line as posted
    port = patches.load(SERIES[3])
    assert _changed_lines(page.text, "mm/gup.c") == _changed_lines(port.text, "mm/gup.c")
    # the same page saved as HTML (lore's <pre> with escaped &, <, >) reads the same
    as_html = (
        "<!DOCTYPE html><html><head><title>x</title></head><body><pre>"
        + html.escape(SEED.read_text())
        + "</pre></body></html>"
    )
    assert patchtext.pieces(as_html) == [(SEED_SUBJECT, page.text)]


def test_lore_page_applies_where_it_should_and_names_the_hunk_where_not(pristine, tmp_path):
    """It applies to the v5.8 lines it was written against (rebuilt from its own hunks: context and
    removed lines at their old line numbers), and on 6.1 the failure names patch, file and hunk."""
    if not SEED.exists():
        pytest.skip(f"{SEED} missing")
    page = patches.load(SEED)
    v58 = tmp_path / "v5.8"
    for rel, lines in _preimage(page.text).items():
        (v58 / rel).parent.mkdir(parents=True, exist_ok=True)
        (v58 / rel).write_text("".join(line + "\n" for line in lines))
    staged = _staged([page], v58, tmp_path / "stage")
    assert b"fault_flags |= FAULT_FLAG_BREAK_COW;" in staged["mm/gup.c"]
    assert b"#define FOLL_BREAK_COW" in staged["include/linux/mm.h"]
    with pytest.raises(PatchDoesNotApply) as failed:
        _staged([page], pristine, tmp_path / "on-6.1")
    assert failed.value.patch == SEED.resolve() and failed.value.file and failed.value.hunk
    assert SEED_SUBJECT in str(failed.value)


def _preimage(diff: str) -> dict:
    """Per file, lines such that every hunk's old side sits at its old line numbers (filler between)."""
    files, lines, current, at = {}, None, None, 0
    for line in diff.splitlines():
        if line.startswith("+++ "):
            current = line[6:].split("\t")[0]
            lines = files.setdefault(current, [])
        elif line.startswith("@@ "):
            at = int(line.split()[1][1:].split(",")[0])
            while len(lines) < at - 1:
                lines.append(f"/* filler {len(lines) + 1} */")
        elif lines is not None and line[:1] in (" ", "-") and not line.startswith("--- "):
            lines.append(line[1:])
    for lines in files.values():
        lines += [f"/* filler tail {i} */" for i in range(3)]
    return files


def test_encoded_subjects_are_decoded(tmp_path):
    """git format-patch writes a subject that is not ASCII as RFC 2047 encoded words (folded when long);
    the patch's subject, which the kernel identity records, is the text the author wrote."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        "GIT_AUTHOR_NAME": "Jörg Tëster",
        "GIT_AUTHOR_EMAIL": "j@example.org",
        "GIT_COMMITTER_NAME": "x",
        "GIT_COMMITTER_EMAIL": "x@example.org",
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    subjects = [
        "mm/userfaultfd: fix the wake-up after UFFDIO_WRITEPROTECT — reported by Jörg",
        "mm/gup: ça, c'est un très long sujet pour que git le replie sur plusieurs lignes d'en-tête",
    ]
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    for i, subject in enumerate(subjects):
        (repo / "f.c").write_text("".join(f"line {n}\n" for n in range(i + 2)))
        subprocess.run(["git", "-C", str(repo), "add", "f.c"], check=True, env=env)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", subject], check=True, env=env)
    out = tmp_path / "out"
    subprocess.run(["git", "-C", str(repo), "format-patch", "-q", "--root", "-o", str(out)], check=True, env=env)
    mails = sorted(out.glob("*.patch"))
    encoded = [ln for m in mails for ln in m.read_text().splitlines() if ln.startswith("Subject:")]
    assert len(encoded) == 2 and all("=?UTF-8?q?" in ln for ln in encoded), encoded  # what the file holds
    assert [p.subject for p in patches.load_series(mails)] == [f"[PATCH {i}/2] {s}" for i, s in enumerate(subjects, 1)]
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(m.read_text() for m in mails))
    assert [p.subject for p in patches.load_series([mbox])] == [f"[PATCH {i}/2] {s}" for i, s in enumerate(subjects, 1)]
    assert patchtext.decoded_header("[PATCH] =?x-no-such-charset?q?abc?=") == "[PATCH] =?x-no-such-charset?q?abc?="
