# SPDX-License-Identifier: GPL-2.0-only
"""Bisection: real git histories, real kernel builds from linux-source-6.1, real QEMU boots.

The kernel test bisects wp-gup-vmsplice over good (model-5.7) .. bad, with the forced-COW
change as one commit and a commit that does not compile right after it (git tests that one
first), and checks the culprit, the skip, the log and that the tree is left as found.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uffdprobe.bisect import git as bisect_git, history as bisect_history, log as bisect_log, step as bisect_step
from uffdprobe.bisect.step import RunOutcome
from uffdprobe.kbuild.source import DEFAULT_TARBALL

BISECT_BOUND = 3000  # seconds for a whole kernel bisection (cold build included)
SCENARIO = ["--scenario", "wp-gup-vmsplice", "--memory", "anon-4k"]


def uffdprobe(*argv, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, bounded; its process group is killed on timeout."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "uffdprobe", *map(str, argv)],
        cwd=kw.pop("cwd", None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


KERNEL_SHAPE = {
    "Makefile": "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n",
    "Kconfig": "",
    "arch/x86/Kconfig": "",
    "mm/Makefile": "",
}


def toy_repo(path: Path, files=("a", "b", "c"), kernel_shaped: bool = True) -> Path:
    """A small git repository with one commit per file, on branch main: kernel-shaped (top Makefile with
    VERSION, Kconfig, arch/, mm/, so bisect takes it) but it does not build; or not a kernel at all."""
    path.mkdir()
    bisect_history.git(path, "init", "--quiet", "--initial-branch=main")
    if kernel_shaped:
        for rel, text in KERNEL_SHAPE.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
            bisect_history.git(path, "add", rel)
        bisect_history.git(path, "commit", "--quiet", "-m", "kernel-shaped skeleton")
    for name in files:
        (path / name).write_text(name + "\n")
        bisect_history.git(path, "add", name)
        bisect_history.git(path, "commit", "--quiet", "-m", f"add {name}")
    return path


def assert_left_as_found(tree: Path, branch: str = "refs/heads/main"):
    assert bisect_git.where(tree) == branch
    assert not (bisect_git.git_dir(tree) / "BISECT_LOG").exists()
    assert bisect_git.run(tree, "bisect", "log", check=False).returncode != 0
    assert bisect_git.run(tree, "status", "--porcelain", "--untracked-files=no").stdout == ""


# --- the decision rule -------------------------------------------------------------------------


def _runs(*kinds):
    return [RunOutcome(k, {}, k, "OK", 1.0) for k in kinds]


@pytest.mark.parametrize(
    "kinds,planned,bad_if,want",
    [
        (("bad",), 3, "any", bisect_step.BAD),  # stops at the first bad run
        (("good", "good", "good"), 3, "any", bisect_step.GOOD),
        (("good", "good"), 3, "any", None),  # one more run could still be bad
        (("good", "bad", "good"), 3, "majority", bisect_step.GOOD),
        (("bad", "good", "bad"), 3, "majority", bisect_step.BAD),
        (("bad", "good"), 3, "all", bisect_step.GOOD),  # one good run is enough
        (("bad", "bad", "bad"), 3, "all", bisect_step.BAD),
        (("unclear", "unclear", "good"), 3, "any", bisect_step.SKIP),
        (("unclear", "good", "good"), 3, "any", bisect_step.GOOD),  # a third may be inconclusive
        (("unclear",), 1, "majority", bisect_step.SKIP),
    ],
)
def test_decide(kinds, planned, bad_if, want):
    assert bisect_step.decide(_runs(*kinds), planned, bad_if)[0] == want


@pytest.mark.parametrize(
    "code,find_fix,want",
    [
        (bisect_step.GOOD, False, 0),
        (bisect_step.BAD, False, 1),
        (bisect_step.GOOD, True, 1),
        (bisect_step.BAD, True, 0),  # to the fix: the defect is git's old term
        (bisect_step.SKIP, True, 125),
        (bisect_step.STOP, True, 130),
    ],
)
def test_exit_for_git(code, find_fix, want):
    assert bisect_step.exit_for_git(code, find_fix) == want


def test_find_fix_terms_parse_real_git_output(tmp_path):
    """git bisect run with the --find-fix terms on a toy history whose commit 'add fix' removes the defect
    (the file 'defect'): the output names it as the first fixed commit, as parse_outcome reads it."""
    tree = toy_repo(tmp_path / "t", files=("defect", "a", "b"))
    (tree / "defect").unlink()
    bisect_history.git(tree, "commit", "--quiet", "-am", "add fix")
    fix = bisect_git.head(tree)
    for name in ("c", "d"):
        (tree / name).write_text(name)
        bisect_history.git(tree, "add", name)
        bisect_history.git(tree, "commit", "--quiet", "-m", f"add {name}")
    old_term, new_term = bisect_git.TERMS[True]
    bisect_git.run(tree, "bisect", "start", f"--term-old={old_term}", f"--term-new={new_term}", "main", "main~4")
    step = (
        f"test -e defect; exit $(( $? == 0 ? {bisect_step.exit_for_git(bisect_step.BAD, True)} : "
        f"{bisect_step.exit_for_git(bisect_step.GOOD, True)} ))"
    )
    output = bisect_git.run(tree, "bisect", "run", "sh", "-c", step).stdout
    bisect_git.reset(tree, "refs/heads/main")
    assert bisect_git.parse_outcome(output, new_term) == (fix, [fix]), output
    assert bisect_git.parse_outcome(output, "bad") == (None, [])


# --- input checks and cleanup on a small repository (no kernel build) ---------------------------


@pytest.mark.reliability('bisecting a tree with uncommitted changes', 'refused, exit 2, tree untouched')
def test_dirty_tree_refused(tmp_path):
    tree = toy_repo(tmp_path / "t")
    (tree / "a").write_text("changed\n")
    done = uffdprobe(
        "bisect", "--tree", tree, "--good", "HEAD~2", "--bad", "HEAD", *SCENARIO, "--results-dir", tmp_path / "w"
    )
    assert done.returncode == 2, done.stderr
    assert "uncommitted changes" in done.stderr and "stash" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert bisect_git.where(tree) == "refs/heads/main" and (tree / "a").read_text() == "changed\n"


@pytest.mark.parametrize(
    "good,bad,extra,words",
    [
        ("nope", "HEAD", [], "--good 'nope' is not a commit"),
        ("HEAD", "HEAD~2", [], "is not an ancestor"),
        ("HEAD~2", "HEAD", ["--find-fix"], "--find-fix: --bad HEAD is not an ancestor of --good HEAD~2"),
    ],
)
def test_bad_refs_refused(tmp_path, good, bad, extra, words):
    tree = toy_repo(tmp_path / "t")
    done = uffdprobe(
        "bisect", "--tree", tree, "--good", good, "--bad", bad, *extra, *SCENARIO, "--results-dir", tmp_path / "w"
    )
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert_left_as_found(tree)


@pytest.mark.reliability('an endpoint that cannot be tested', 'stops with one line, tree reset')
def test_untestable_endpoint_stops_and_resets(tmp_path):
    """The good endpoint does not build (not a kernel): a clear message, exit 2, tree as found."""
    tree = toy_repo(tmp_path / "t")
    done = uffdprobe(
        "bisect",
        "--tree",
        tree,
        "--good",
        "HEAD~2",
        "--bad",
        "HEAD",
        *SCENARIO,
        "--quiet",
        "--results-dir",
        tmp_path / "w",
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "--good HEAD~2 cannot be tested" in done.stderr
    assert_left_as_found(tree)
    steps = bisect_log.read(tmp_path / "w" / "bisect.jsonl", "step")
    assert [s["decision"] for s in steps] == ["skip"] and steps[0]["role"] == "check-good"


@pytest.mark.reliability(
    "bisect --good X --bad X (the same commit)", "one line saying they are the same commit, exit 2, tree untouched"
)
def test_same_endpoints_refused(tmp_path):
    tree = toy_repo(tmp_path / "t")
    done = uffdprobe(
        "bisect", "--tree", tree, "--good", "HEAD", "--bad", "main", *SCENARIO, "--results-dir", tmp_path / "w"
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "are the same commit" in line and "not an ancestor" not in line
    assert_left_as_found(tree)


@pytest.mark.parametrize("command", ["bisect", "bisect-step"])
@pytest.mark.reliability(
    "bisect or bisect-step on a git tree that is not a Linux kernel",
    "refused up front in one line (no make run, no endpoint blamed), exit 2, tree untouched",
)
def test_a_tree_that_is_not_a_kernel_is_refused(tmp_path, command):
    tree = toy_repo(tmp_path / "t", kernel_shaped=False)
    argv = ["--good", "HEAD~2", "--bad", "HEAD"] if command == "bisect" else []
    done = uffdprobe(command, "--tree", tree, *argv, *SCENARIO, "--results-dir", tmp_path / "w", timeout=60)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "is not a Linux kernel checkout" in line and str(tree) in line
    assert not (tmp_path / "w").exists()
    assert_left_as_found(tree)


@pytest.mark.reliability(
    "bisect-step on a tree with uncommitted changes",
    "refused in one line naming the change and HEAD's commit, exit 2, nothing built",
)
def test_step_on_a_dirty_tree_refused(tmp_path):
    tree = toy_repo(tmp_path / "t")
    (tree / "a").write_text("changed\n")
    done = uffdprobe("bisect-step", "--tree", tree, *SCENARIO, "--results-dir", tmp_path / "w", cwd=tree)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "uncommitted changes" in line and bisect_git.head(tree)[:12] in line
    assert not (tmp_path / "w").exists()
    assert (tree / "a").read_text() == "changed\n"


def test_step_bad_command_line_aborts_git_bisect(tmp_path):
    """Inside a bisection a bad bisect-step command line exits 128 (git stops), not 2 (= bad)."""
    tree = toy_repo(tmp_path / "t")
    bisect_git.run(tree, "bisect", "start", "HEAD", "HEAD~2")
    try:
        done = uffdprobe("bisect-step", "--tree", tree, "--scenario", "no-such-scenario", cwd=tree)
        assert done.returncode == 128 and "stops git bisect run" in done.stderr
    finally:
        bisect_git.run(tree, "bisect", "reset")
    done = uffdprobe("bisect-step", "--tree", tree, "--scenario", "no-such-scenario", cwd=tree)
    assert done.returncode == 2 and "uffdprobe list" in done.stderr


# --- the kernel bisection -----------------------------------------------------------------------


def _need_tools():
    missing = [t for t in ("git", "make", "gcc", "flex", "bison", "bc", "qemu-system-x86_64") if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing {' '.join(missing)}: apt-get install them")
    if not DEFAULT_TARBALL.exists():
        pytest.skip(f"{DEFAULT_TARBALL} missing: apt-get install linux-source-6.1")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """<dir>/tree: the scripted history on branch main; <dir> is also the bisection work dir."""
    _need_tools()
    base = tmp_path_factory.mktemp("bisect")
    started = time.monotonic()
    roles = bisect_history.make_history(base / "tree", bisect_history.cached_import())
    print(f"\nbisect history ready in {time.monotonic() - started:.1f} s")
    yield base, roles
    for big in ("tree", "build"):  # about 1.7 GB; the bisect log and build logs stay for inspection
        shutil.rmtree(base / big, ignore_errors=True)


@pytest.mark.build
@pytest.mark.vm
@pytest.mark.timeout(BISECT_BOUND + 300)
@pytest.mark.reliability(
    'a commit that does not build, inside the bisected range', 'skipped (125), culprit still found'
)
def test_bisect_finds_forced_cow_commit(history):
    base, roles = history
    tree = base / "tree"
    started = time.monotonic()
    done = uffdprobe(
        "bisect",
        "--tree",
        tree,
        "--results-dir",
        base,
        "--good",
        roles["good"],
        "--bad",
        "main",
        *SCENARIO,
        timeout=BISECT_BOUND,
    )
    wall = time.monotonic() - started
    sys.stderr.write(done.stderr[-6000:])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"first bad commit: {roles['culprit']} mm/gup: model-5.8: break COW" in done.stdout
    assert_left_as_found(tree)

    log = bisect_log.read(base / "bisect.jsonl")
    result = [e for e in log if e["event"] == "result"][-1]
    assert result["first_bad"]["commit"] == roles["culprit"]
    steps = [e for e in log if e["event"] == "step"]
    by_commit = {s["commit"]: s for s in steps}
    assert [s["role"] for s in steps[:2]] == ["check-good", "check-bad"]
    assert [s["decision"] for s in steps[:2]] == ["good", "bad"]
    broken = by_commit[roles["broken"]]
    assert broken["decision"] == "skip" and broken["reason"].startswith("build failed"), broken
    assert by_commit[roles["culprit"]]["decision"] == "bad"
    assert by_commit[roles["culprit"]]["runs"][0]["verdicts"] == {"anon-4k": "HANG"}
    assert len(steps) <= 7
    text = (base / "bisect.txt").read_text()
    assert roles["culprit"] in text and "SKIP" in text

    print("\nbisect step times (s): role commit build compiled boot+verdict step")
    for s in steps:
        print(
            f"  {s['role']:<10} {s['commit'][:12]} {s['decision']:<4} {s['build_s'] or 0:7.1f} "
            f"{s['compiled']:5d} {s['boot_s'] or 0:7.1f} {s['step_s']:7.1f}"
        )
    print(f"  whole bisection {wall:.1f} s ({len(steps)} steps)")


@pytest.mark.build
@pytest.mark.vm
@pytest.mark.timeout(900)
@pytest.mark.reliability('Ctrl-C during a bisect step', 'exit 130, tree reset, no bisect state, no QEMU left')
def test_ctrl_c_stops_and_resets(history):
    """SIGINT while the good endpoint boots: exit 130 soon, QEMU gone, tree back on main, no bisect state."""
    base, roles = history
    tree = base / "tree"
    work = base  # the kernel bisection's work dir: the endpoint build is incremental
    before = len(bisect_log.read(work / "bisect.jsonl", "step"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "bisect",
            "--tree",
            str(tree),
            "--results-dir",
            str(work),
            "--good",
            roles["good"],
            "--bad",
            "main",
            *SCENARIO,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 780
        for line in proc.stderr:
            if "[run 1/1]" in line and "booting" in line:
                break
            assert time.monotonic() < deadline, "the endpoint never started to boot"
        time.sleep(2)
        os.kill(proc.pid, signal.SIGINT)
        started = time.monotonic()
        rest = proc.communicate(timeout=120)[1]
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    assert proc.returncode == 130, rest[-2000:]
    assert "the tree is back where it was" in rest
    assert stopped_in < 60
    assert_left_as_found(tree)
    steps = bisect_log.read(work / "bisect.jsonl", "step")[before:]
    assert [(s["role"], s["decision"], s["runs"]) for s in steps] == [("check-good", "stop", [])]
    leftover = subprocess.run(["pgrep", "-f", str(work / "build")], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes left behind: {leftover}"


@pytest.mark.build
@pytest.mark.vm
@pytest.mark.timeout(BISECT_BOUND + 300)
def test_find_fix_names_the_fixing_commit(history):
    """bisect --find-fix from main (the forced COW is there) to the fixes branch: it names the commit that
    undoes the forced COW, as the fix to backport."""
    base, roles = history
    tree = base / "tree"
    before = len(bisect_log.read(base / "bisect.jsonl", "step"))
    started = time.monotonic()
    # --vm-timeout: a guest's clock runs fast under TCG on a loaded machine (seen: 330 guest seconds in
    # 30 wall seconds at load 16 on 2 cores), and the in-guest bound is counted on that clock
    done = uffdprobe(
        "bisect",
        "--find-fix",
        "--tree",
        tree,
        "--results-dir",
        base,
        "--bad",
        "main",
        "--good",
        bisect_history.FIX_BRANCH,
        *SCENARIO,
        "--vm-timeout",
        1200,
        timeout=BISECT_BOUND,
    )
    wall = time.monotonic() - started
    sys.stderr.write(done.stderr[-6000:])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"first fixed commit: {roles['fix']} mm/gup: fix: stop breaking COW for read GUP" in done.stdout
    assert f"the fix to backport: {roles['fix'][:12]}" in done.stdout
    assert_left_as_found(tree)
    log = bisect_log.read(base / "bisect.jsonl")
    result = [e for e in log if e["event"] == "result"][-1]
    assert result["term"] == "fixed" and result["first_fixed"]["commit"] == roles["fix"]
    steps = bisect_log.read(base / "bisect.jsonl", "step")[before:]
    by_commit = {s["commit"]: s for s in steps}
    assert [(s["role"], s["decision"]) for s in steps[:2]] == [("check-good", "good"), ("check-bad", "bad")]
    assert by_commit[roles["fix"]]["decision"] == "good"
    assert by_commit[roles["fix"]]["runs"][0]["verdicts"] == {"anon-4k": "PASS"}
    if roles["fix-edit-before"] in by_commit:
        assert by_commit[roles["fix-edit-before"]]["runs"][0]["verdicts"] == {"anon-4k": "HANG"}
    print(f"\nbisect --find-fix: {len(steps)} steps, {wall:.1f} s")
