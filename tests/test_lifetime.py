# SPDX-License-Identifier: GPL-2.0-only
"""Nothing outlives uffdprobe, whatever kills it (issue 27): the real `python -m uffdprobe` is SIGKILLed
mid-run, or its --exec program kills it, or a user scenario leaves a daemon in a session of its own;
afterwards no process of the run is alive (the --exec program, its children, setsid daemons, scenario
children, the watchdog) and no temporary folder of it is left. Host runs, as root and as nobody."""

import glob
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest

from uffdprobe.exitcodes import Exit
from uffdprobe.osutil import lifetime

#: Marks in the argv of every process the programs below start, so the test finds them wherever they went.
MARK = "3141.5926"


def _marked() -> list:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if any(MARK in a for a in p.info["cmdline"] or ()) and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _gone_within(seconds: float) -> list:
    _wait_until(lambda: not _marked(), seconds)
    return [" ".join(p.cmdline()) for p in _marked()]


#: A program that starts a child, a setsid daemon and a double-forked setsid daemon, then waits.
FAMILY = textwrap.dedent(f"""\
    sleep {MARK}1 &
    setsid sleep {MARK}2 &
    (setsid sh -c 'sleep {MARK}3 & exit 0' &)
    sleep {MARK}4
""")


def _family_started() -> bool:
    return len(_marked()) >= 4


@pytest.fixture
def clean_slate():
    assert not _marked(), "processes of an earlier test are still alive"
    yield
    for p in _marked():  # never leave them to the next test, whatever happened
        p.kill()


def _children(pid: int) -> list:
    """(process, argv) of the live children of `pid` (adopted daemons that ended are zombies: left out)."""
    out = []
    for c in psutil.Process(pid).children():
        try:
            out.append((c, " ".join(c.cmdline())))
        except psutil.Error:
            pass
    return out


def _temp_folders(pid: int) -> list:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"uffdprobe-*-{pid}-*"))


@pytest.mark.parametrize("user", ["root", "nobody"])
@pytest.mark.reliability(
    "SIGKILL of a host `uffdprobe run --exec` whose program started a child, a setsid "
    "daemon and a double-forked setsid daemon (as root: a cgroup of its own; as nobody: "
    "the subreaper and the watchdog's notes)",
    "within seconds no process of the run is alive (program, children, daemons, "
    "watchdog) and its $TMPDIR/uffdprobe-exec-* folder is gone",
)
def test_sigkill_of_run_exec_leaves_nothing(clean_slate, request, user):
    argv, env = [sys.executable], dict(os.environ)
    if user == "nobody":
        nobody = request.getfixturevalue("nobody_python")
        argv, env = nobody.argv, {**env, **nobody.env, "HOME": "/tmp"}
    run = subprocess.Popen(
        argv + ["-m", "uffdprobe", "run", "--exec", "--", "sh", "-c", FAMILY],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd="/",
    )
    try:
        assert _wait_until(_family_started, 60), [p.cmdline() for p in _marked()]
        assert _temp_folders(run.pid), "the run made no uffdprobe-exec-PID-* folder"
        watchdogs = [c for c, argv in _children(run.pid) if "uffdprobe.osutil.watchdog" in argv]
        assert len(watchdogs) == 1
        run.kill()
        run.wait(timeout=30)
        assert _gone_within(15) == []
        assert _wait_until(lambda: not watchdogs[0].is_running(), 15)
        assert _wait_until(lambda: not _temp_folders(run.pid), 15), _temp_folders(run.pid)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.reliability(
    "the --exec program SIGKILLs its own uffdprobe (kill -9 $PPID) after starting a daemon",
    "no process of the run is alive afterwards, no temporary folder left",
)
def test_a_program_that_kills_its_parent_leaves_nothing(clean_slate):
    program = f"setsid sleep {MARK}5 & sleep 1; kill -9 $PPID; sleep {MARK}6"
    run = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", "--exec", "--", "sh", "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert _gone_within(15) == []


SCENARIO_WITH_DAEMON = textwrap.dedent(f"""\
    import subprocess
    from uffdprobe.scenarios.api import Outcome, Scenario, Verdict

    def run_daemon(ctx):
        subprocess.Popen(["sleep", "{MARK}7"], start_new_session=True)
        subprocess.Popen(["sh", "-c", "setsid sleep {MARK}8 & exit 0"]).wait()
        return Outcome(Verdict.PASS, "left two daemons behind", {{}})

    SCENARIOS = [Scenario("leaves-daemons", "does a scenario's daemon outlive the run?", run_daemon,
                          needs=(), memory=("anon-4k",))]
""")


@pytest.mark.reliability(
    "a user scenario starts a child in a new session (start_new_session, setsid) and returns",
    "the run ends normally (PASS, exit 0) and neither daemon is alive after it",
)
def test_a_scenario_daemon_does_not_outlive_the_run(clean_slate, tmp_path):
    source = tmp_path / "daemons.py"
    source.write_text(SCENARIO_WITH_DAEMON)
    run = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", "--scenarios-from", str(source), "leaves-daemons"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == Exit.OK, run.stdout + run.stderr
    assert "PASS" in run.stdout
    assert _gone_within(5) == []


@pytest.mark.reliability(
    "SIGKILL of a host run while a scenario child runs (a sleeping user scenario)",
    "the scenario child and everything it started are gone within seconds",
)
def test_sigkill_mid_scenario_leaves_no_scenario_child(clean_slate, tmp_path):
    source = tmp_path / "slow.py"
    source.write_text(
        SCENARIO_WITH_DAEMON.replace("    return Outcome", '    __import__("time").sleep(300)\n    return Outcome')
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "uffdprobe", "run", "--scenarios-from", str(source), "leaves-daemons"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_until(lambda: len(_marked()) >= 2, 60)
        child = [c for c, argv in _children(run.pid) if "watchdog" not in argv]
        assert child, "no scenario child"
        run.kill()
        run.wait(timeout=30)
        assert _gone_within(15) == []
        assert _wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in child), 15)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_dead_owners_temp_folder_is_swept_and_a_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        gone = tmp_path / f"uffdprobe-exec-{dead.pid}-abc"
        kept = tmp_path / f"uffdprobe-cell-{live.pid}-def"
        other = tmp_path / f"uffdprobe-scratch-{dead.pid}-ghi"  # not a kind that carries its owner: not ours
        for folder in (gone, kept, other):
            (folder / "sub").mkdir(parents=True)
        assert lifetime.sweep_stale(str(tmp_path)) == [str(gone)]
        assert kept.exists() and other.exists() and not gone.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.reliability(
    "SIGKILL of `matrix --cluster local:1` while it runs (its Dask scheduler and worker processes up)",
    "within seconds no worker, nanny or run child is alive, and neither its "
    "uffdprobe-cell-* scratch space nor a dask-scratch-space is left in $TMPDIR",
)
def test_sigkill_of_a_cluster_matrix_leaves_no_worker_nor_scratch(clean_slate, tmp_path):
    pytest.importorskip("distributed")
    source = tmp_path / "slow.py"
    source.write_text(
        SCENARIO_WITH_DAEMON.replace("    return Outcome", '    __import__("time").sleep(300)\n    return Outcome')
    )
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--cluster",
            "local:1",
            "--kernel",
            "host",
            "--scenarios-from",
            str(source),
            "--scenario",
            "leaves-daemons",
            "--results-dir",
            str(tmp_path / "r"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    try:
        assert _wait_until(lambda: len(_marked()) >= 2, 120)  # the host's scenario runs: workers are up
        family = psutil.Process(run.pid).children(recursive=True)
        assert glob.glob(str(tmp / "uffdprobe-cell-*")), os.listdir(tmp)
        run.kill()
        run.wait(timeout=30)
        assert _gone_within(15) == []
        assert _wait_until(
            lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family), 20
        ), [p for p in family if p.is_running()]
        assert _wait_until(lambda: os.listdir(tmp) == [], 15), os.listdir(tmp)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
