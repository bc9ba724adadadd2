# SPDX-License-Identifier: GPL-2.0-only
"""Bad input to the builder and the matrix: one line naming the problem and the fix, exit 2, nothing written.

Every case runs the real command line (cli.main, or a subprocess as `nobody` where root's
ability to read anything would hide the fault) and then looks at the disk: no cache directory,
no cache entry, no output file.
"""

import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from uffdprobe.cli import main as cli
from uffdprobe.kbuild import build as kbuild, recipes
from uffdprobe.exitcodes import Exit
from uffdprobe.kbuild.source import DEFAULT_TARBALL

FRAGMENT = str(kbuild.DEFAULT_FRAGMENT)
PATCH = str(recipes.load("model-5.8").patches[0])


def _recipe(path: pathlib.Path, body: str) -> pathlib.Path:
    path.write_text(body)
    return path


def _good_recipe_lines(patch: str = PATCH) -> str:
    return (
        f'name = "probe"\nsource = "{DEFAULT_TARBALL}"\nbase = "tinyconfig"\n'
        f'fragments = ["{FRAGMENT}"]\npatches = ["{patch}"]\n'
    )


def _run(argv, capsys):
    status = cli.main(argv)
    _, err = capsys.readouterr()
    return status, err.strip()


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _refused(capsys, argv: list, words: list, unwritten: pathlib.Path) -> None:
    """The command exits 2 with one stderr line holding every one of `words`, and `unwritten` never appears."""
    status, err = _run(argv, capsys)
    assert status == Exit.USAGE
    line = _one_line(err)
    for word in words:
        assert word in line
    assert not unwritten.exists()


# --- malformed recipes ---------------------------------------------------------------------------

BAD_RECIPES = {
    "invalid TOML": ('name = "probe"\nsource = \n', ["not valid TOML", "line 2", "fix that line"]),
    "a required key missing": (
        f'name = "probe"\nfragments = ["{FRAGMENT}"]\npatches = []\n',
        ["'source' is missing", "add source = "],
    ),
    "a list where a string belongs": (
        'name = "probe"\nsource = ["/usr/src/a.tar.xz"]\npatches = []\n',
        ["wrong type", "source must be a string"],
    ),
    "a string where a list belongs": (
        f'name = "probe"\nsource = "{DEFAULT_TARBALL}"\npatches = "{PATCH}"\n',
        ["wrong type", "patches must be a list"],
    ),
    "an [expect] table naming an unknown scenario": (
        _good_recipe_lines() + '[expect]\n"wp-gup-splice" = "PASS"\n',
        ["unknown scenario 'wp-gup-splice'", "wp-gup-vmsplice", "uffdprobe list"],
    ),
    "an [expect] table with an unknown verdict": (
        _good_recipe_lines() + '[expect]\n"cow-leak" = "LEAKS"\n',
        ["'LEAKS' is not a verdict", "NOT_LEAK"],
    ),
    "an [expect] 'at least K in N' declaration with K > N": (
        _good_recipe_lines() + '[expect]\n"cow-leak" = "LEAK>=5/2"\n',
        ["cow-leak = 'LEAK>=5/2'", "K in LEAK>=K/N must be from 1 to N"],
    ),
    "an [expect] key naming a memory kind its scenario does not run on": (
        _good_recipe_lines() + '[expect]\n"umap-evict/anon-thp" = "HANG"\n',
        ["'umap-evict/anon-thp'", "does not run on memory kind 'anon-thp'", "anon-4k"],
    ),
    "an [expect] nested table instead of SCENARIO/MEMORY keys": (
        _good_recipe_lines() + '[expect]\n"cow-leak" = { anon-4k = "LEAK" }\n',
        ["cow-leak = {'anon-4k': 'LEAK'} is not a verdict"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_RECIPES))
@pytest.mark.reliability(
    "a malformed recipe (invalid TOML, a missing required key, a wrong type, "
    "an [expect] naming an unknown scenario, memory kind or verdict)",
    "one line naming the problem and the fix, exit 2, no cache written",
)
def test_malformed_recipe(tmp_path, capsys, case):
    body, words = BAD_RECIPES[case]
    recipe = _recipe(tmp_path / "probe.toml", body)
    cache = tmp_path / "cache"
    _refused(capsys, ["kernel", "build", str(recipe), "--cache-dir", str(cache)], [str(recipe)] + words, cache)


# --- a patch that is not a patch -----------------------------------------------------------------


@pytest.mark.reliability(
    "a patch file that is not a patch (plain text)",
    "one line naming the file and what a patch looks like, exit 2, no cache written",
)
@pytest.mark.parametrize("how", ["--patch", "recipe"])
def test_patch_that_is_not_a_patch(tmp_path, capsys, how):
    notes = tmp_path / "0001-notes.patch"
    notes.write_text("Remember to break COW on read GUP.\n\nThis is prose, not a diff.\n")
    cache = tmp_path / "cache"
    if how == "--patch":
        argv = ["kernel", "build", "--patch", str(notes), "--cache-dir", str(cache)]
    else:
        argv = [
            "kernel",
            "build",
            str(_recipe(tmp_path / "probe.toml", _good_recipe_lines(str(notes)))),
            "--cache-dir",
            str(cache),
        ]
    _refused(capsys, argv, [str(notes), "is not a patch", "git format-patch"], cache)


# --- unreadable files (mode 000), as an unprivileged user -----------------------------------------


@pytest.fixture
def nobody_dir(nobody_python):
    """A directory `nobody` may write in, and the environment that keeps its caches there."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="uffdprobe-nobody-"))
    os.chmod(work, 0o777)
    (work / "home").mkdir()
    os.chown(work / "home", 65534, 65534)
    yield work
    shutil.rmtree(work)


def _locked(path: pathlib.Path, text) -> pathlib.Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    os.chmod(path, 0)
    return path


def _as_nobody(nobody_python, work: pathlib.Path, argv: list) -> subprocess.CompletedProcess:
    env = dict(HOME=str(work / "home"), XDG_CACHE_HOME=str(work / "home" / ".cache"))
    return nobody_python.run(argv, timeout=120, cwd=work, env=env)


def _a_bzimage() -> bytes:
    """A real kernel image from the cache, else the head of one the tests cannot use (still unreadable)."""
    for entry in kbuild.list_kernels():
        return entry.bzimage.read_bytes()
    return b"\0" * 4096


UNREADABLE = {
    "recipe": lambda w: [
        "kernel",
        "build",
        str(_locked(w / "probe.toml", _good_recipe_lines())),
        "--cache-dir",
        str(w / "cache"),
    ],
    "patch": lambda w: [
        "kernel",
        "build",
        "--patch",
        str(_locked(w / "0001-x.patch", pathlib.Path(PATCH).read_text())),
        "--cache-dir",
        str(w / "cache"),
    ],
    "kernel image": lambda w: ["boot", "-q", str(_locked(w / "bzImage", _a_bzimage())), "--", "true"],
    "kernel image for run": lambda w: [
        "run",
        "--kernel",
        str(_locked(w / "bzImage", _a_bzimage())),
        "--json",
        str(w / "results.json"),
    ],
}


@pytest.mark.parametrize("what", list(UNREADABLE))
@pytest.mark.reliability(
    "an unreadable file (recipe, patch or kernel image with mode 000), not root",
    "one line naming the file and chmod, exit 2, nothing written",
)
def test_unreadable_file(nobody_dir, nobody_python, what):
    argv = UNREADABLE[what](nobody_dir)
    before = sorted(p.name for p in nobody_dir.iterdir())
    proc = _as_nobody(nobody_python, nobody_dir, argv)
    assert proc.returncode == Exit.USAGE, proc.stderr
    said = [x for x in proc.stderr.strip().splitlines() if not x.startswith("[vm] ")]  # progress is not an error
    line = _one_line("\n".join(said))
    assert "cannot be read (Permission denied)" in line and "chmod a+r" in line
    assert sorted(p.name for p in nobody_dir.iterdir()) == before  # no cache, no output
    assert list((nobody_dir / "home").iterdir()) == []


# --- malformed expectations on the matrix command line --------------------------------------------


@pytest.mark.parametrize(
    "item,words",
    [
        ("wp-real-write=MAYBE", ["write [KERNEL:]SCENARIO[/MEMORY]=VERDICT", "NOT_HANG"]),
        ("host:wp-gup-splice=PASS", ["unknown scenario 'wp-gup-splice'", "wp-gup-vmsplice"]),
        ("wp-real-write", ["write [KERNEL:]SCENARIO[/MEMORY]=VERDICT"]),
        ("umap-evict/anon-thp=HANG", ["does not run on memory kind 'anon-thp'", "anon-4k"]),
        ("cow-leak/anon-2m=LEAK", ["does not run on memory kind 'anon-2m'"]),
    ],
)
@pytest.mark.reliability(
    "uffdprobe matrix --expect with an unknown verdict or scenario",
    "one line naming the fix, exit 2, no output file, nothing run",
)
def test_matrix_expect_malformed(tmp_path, capsys, item, words):
    out = tmp_path / "m.json"
    _refused(capsys, ["matrix", "--kernel", "host", "--expect", item, "--json", str(out)], [repr(item)] + words, out)
