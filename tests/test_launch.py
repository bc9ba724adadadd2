# SPDX-License-Identifier: GPL-2.0-only
"""The suite passes however it is launched: as a background job from a script, SIGINT and SIGQUIT start out
ignored and every child would inherit that, so the tests that interrupt a child would see it run on."""

import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_sigint_reaches_a_child_python():
    """What the interrupting tests rely on: a Python child started by the suite stops on SIGINT."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "up"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert "KeyboardInterrupt" in err and child.returncode == -signal.SIGINT, (child.returncode, err[-500:])


def _ignore_like_a_background_job():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def test_a_suite_launched_with_sigint_ignored_still_interrupts_its_children():
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{HERE / 'test_launch.py'}::test_sigint_reaches_a_child_python",
        ],
        cwd="/",
        preexec_fn=_ignore_like_a_background_job,  # not the checkout: its source
        # would shadow the installed package (tox)
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout and time.monotonic() - started < 120
