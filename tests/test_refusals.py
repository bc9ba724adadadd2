# SPDX-License-Identifier: GPL-2.0-only
"""Refusals happen before anything boots, messages tell the truth about kept results, and oversize
evidence is cut, not an ERROR (issue 27, its last bullet). Every case runs the real command line."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from uffdprobe.exitcodes import Exit


def _uffdprobe(*argv, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def _one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


REFUSED = {
    "matrix --kernel host --kernel stock --scratch-fs ext4": (
        ["matrix", "--kernel", "host", "--kernel", "stock", "--scratch-fs", "ext4"],
        ["--scratch-fs ext4", "host"],
    ),
    "matrix --kselftest ''": (["matrix", "--kernel", "host", "--kselftest", ""], ["--kselftest ''", "empty"]),
    "run --kselftest ''": (["run", "--kselftest", ""], ["--kselftest ''", "empty"]),
    "matrix --kselftest 'cow,'": (["matrix", "--kernel", "host", "--kselftest", "cow,"], ["'cow,'", "empty"]),
    "matrix --cluster ''": (["matrix", "--kernel", "host", "--cluster", ""], ["--cluster ''"]),
    "contradicting --expect (matrix)": (
        ["matrix", "--kernel", "host", "--expect", "cow-leak=PASS", "--expect", "cow-leak=LEAK"],
        ["contradicts", "cow-leak=PASS"],
    ),
    "contradicting --expect (run)": (
        ["run", "cow-leak", "--expect", "cow-leak/anon-4k=PASS", "--expect", "cow-leak/anon-4k=LEAK"],
        ["contradicts", "cow-leak/anon-4k=PASS"],
    ),
}


@pytest.mark.reliability(
    "matrix host + --scratch-fs, an empty --kselftest or --cluster, contradicting --expect declarations",
    "refused before anything is built or booted: one line, exit 2, no results folder, no report",
)
@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_before_anything_boots(tmp_path, case):
    argv, words = REFUSED[case]
    started = time.monotonic()
    proc = _uffdprobe(*argv, "--json", tmp_path / "r.json", "--results-dir", tmp_path / "w", timeout=120)
    assert proc.returncode == Exit.USAGE, proc.stdout + proc.stderr
    line = _one_line(proc)
    for word in words:
        assert word in line, line
    assert not (tmp_path / "w").exists() and not (tmp_path / "r.json").exists()
    assert "booting" not in proc.stderr and time.monotonic() - started < 60


def test_the_same_declaration_twice_is_no_contradiction(tmp_path):
    proc = _uffdprobe(
        "run",
        "wp-real-write",
        "--memory",
        "anon-4k",
        "--expect",
        "wp-real-write=PASS",
        "--expect",
        "wp-real-write=PASS",
    )
    assert proc.returncode == Exit.OK, proc.stderr


BIG = textwrap.dedent("""\
    from uffdprobe.scenarios.api import Outcome, Scenario, Verdict

    def run_big(ctx):
        return Outcome(Verdict.PASS, "a PASS with 50 MB of evidence", {"blob": "x" * (50 << 20), "small": [1, 2, 3]})

    SCENARIOS = [Scenario("big-evidence", "does oversize evidence stay a PASS?", run_big, needs=(),
                          memory=("anon-4k",))]
""")


@pytest.mark.reliability(
    "a scenario that returns 50 MB of evidence with its PASS",
    "PASS, exit 0: the largest entries cut, each with its size and head, and a note saying "
    "so; the small ones whole (never 'ERROR OSError: Message too long')",
)
def test_oversize_evidence_is_cut_with_a_note(tmp_path):
    (tmp_path / "big.py").write_text(BIG)
    out = tmp_path / "r.json"
    proc = _uffdprobe("run", "--scenarios-from", tmp_path / "big.py", "big-evidence", "--json", out)
    assert proc.returncode == Exit.OK, proc.stdout + proc.stderr
    [r] = json.loads(out.read_text())["results"]
    assert r["verdict"] == "PASS", r["reason"]
    ev = r["evidence"]
    assert ev["small"] == [1, 2, 3] and ev["blob"]["cut_bytes"] == (50 << 20) + 2
    assert ev["blob"]["head"].startswith('"xxxx') and "blob cut" in ev["evidence_cut"]
    assert out.stat().st_size < 1 << 20


SLOW = textwrap.dedent("""\
    import time
    from uffdprobe.scenarios.api import Outcome, Scenario, Verdict

    def run_slow(ctx):
        time.sleep(120)
        return Outcome(Verdict.PASS, "slept", {})

    SCENARIOS = [Scenario("slow-one", "slow", run_slow, needs=(), memory=("anon-4k",))]
""")


@pytest.mark.parametrize("keep", [False, True], ids=["--json only", "--results-dir"])
@pytest.mark.reliability(
    "Ctrl-C (SIGINT) of a host `run --json F` mid-scenario, with and without --results-dir",
    "exit 130; the line says where the verdicts so far are (DIR) or that none were kept, "
    "and that F is written only when a run ends; F absent",
)
def test_an_interrupted_run_says_what_was_kept(tmp_path, keep):
    (tmp_path / "slow.py").write_text(SLOW)
    out, kept = tmp_path / "r.json", tmp_path / "kept"
    argv = [
        sys.executable,
        "-m",
        "uffdprobe",
        "run",
        "--scenarios-from",
        str(tmp_path / "slow.py"),
        "wp-real-write",
        "slow-one",
        "--memory",
        "anon-4k",
        "--json",
        str(out),
    ] + (["--results-dir", str(kept)] if keep else [])
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # a background job
    deadline = time.monotonic() + 120
    while not list(Path("/proc").glob(f"{proc.pid}/task")) or not _has_child(proc.pid):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(3)  # wp-real-write done, slow-one sleeping
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == Exit.INTERRUPTED, err
    last = err.strip().splitlines()[-1]
    assert f"{out} is written only when a run ends, so it was not" in last, last
    if keep:
        assert f"kept in {kept}" in last
        assert "wp-real-write" in (kept / "verdicts.jsonl").read_text()
    else:
        assert "no results were kept" in last
    assert not out.exists()


def _has_child(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


@pytest.mark.reliability(
    "a bisect refused at its endpoints (--good not an ancestor of --bad) with a new --results-dir",
    "one line, exit 2, and no empty --results-dir left behind",
)
def test_a_refused_bisect_leaves_no_work_dir(tmp_path):
    tree = tmp_path / "linux"
    tree.mkdir()
    for name in ("arch", "mm"):
        (tree / name).mkdir()
    (tree / "Kconfig").write_text("\n")
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\n")
    git = ["git", "-C", str(tree), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    work = tmp_path / "work"
    proc = _uffdprobe(
        "bisect",
        "--tree",
        tree,
        "--good",
        "HEAD",
        "--bad",
        "no-such-ref",
        "--scenario",
        "cow-leak",
        "--results-dir",
        work,
        timeout=120,
    )
    assert proc.returncode in (Exit.USAGE, Exit.SETUP), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not work.exists()


@pytest.mark.reliability(
    "--kernel names a truncated Debian kernel .deb",
    "one line naming the file and dpkg-deb's first complaint, whole (not cut mid-path), exit 2",
)
def test_a_truncated_deb_is_one_whole_line(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_leftovers import _deb

    deb = _deb()
    cut = tmp_path / deb.name
    cut.write_bytes(deb.read_bytes()[: 2 << 20])
    proc = _uffdprobe("run", "--kernel", cut, "cow-leak", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == Exit.USAGE, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("uffdprobe:")]
    assert len(said) == 1 and proc.stderr.strip().endswith(said[0]) and "Traceback" not in proc.stderr
    assert f"cannot unpack {cut}:" in said[0] and "fetch the package again" in said[0], said
    assert said[0].count(str(cut)) == 1 and "unexpected end of file" in said[0]


@pytest.mark.reliability(
    "a matrix refused after its plan was printed (a --cluster address nobody answers)",
    "exit 2; it never says 'logs under DIR' for the folder it did not make, and makes none",
)
def test_a_refused_matrix_names_no_log_folder(tmp_path):
    pytest.importorskip("distributed")
    proc = _uffdprobe(
        "matrix",
        "--kernel",
        "host",
        "--cluster",
        "tcp://127.0.0.1:9",
        "--results-dir",
        tmp_path / "w",
        timeout=120,
        env={"UFFDPROBE_CLUSTER_TIMEOUT": "2"},  # the documented connect bound (10 s), not what is asserted here
    )
    assert proc.returncode == Exit.USAGE, proc.stderr
    assert "logs under" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()
