# SPDX-License-Identifier: GPL-2.0-only
"""Paper cuts a daily user meets, each on the real command line: NO_COLOR, "did you mean" for a mistyped
scenario or recipe name."""

import os
import pty
import select
import subprocess
import sys

from uffdprobe.exitcodes import Exit


def _on_a_terminal(argv: list, env: dict, timeout: float = 300) -> tuple:
    """Run `python -m uffdprobe ARGV` with stdout and stderr on a pseudo-terminal: (exit status, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uffdprobe", *argv],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd="/",
    )
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                raise TimeoutError(out.decode(errors="replace")[-2000:])
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        status = proc.wait(timeout=60)
    return status, out.decode(errors="replace")


def test_no_color_turns_the_tables_colours_off(kf):
    """The matrix table on a terminal is coloured; with NO_COLOR set (any value but empty) it is not."""
    argv = ["matrix", "--kernel", "host", "--scenario", "cow-leak", "--memory", "anon-4k", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    status, coloured = _on_a_terminal(argv, env)
    assert status == Exit.OK, coloured
    assert "\033[32mPASS" in coloured  # PASS in green
    for value in ("1", "anything"):
        status, plain = _on_a_terminal(argv, {**env, "NO_COLOR": value})
        assert status == Exit.OK and "PASS" in plain and "\033[" not in plain, plain
    status, empty = _on_a_terminal(argv, {**env, "NO_COLOR": ""})
    assert status == Exit.OK and "\033[32mPASS" in empty  # an empty NO_COLOR does not count (no-color.org)


def _uffdprobe(*argv):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *argv], capture_output=True, text=True, timeout=120, cwd="/"
    )


def test_a_mistyped_name_gets_a_did_you_mean():
    """A scenario or recipe name one typo away: one line that offers the close name, exit 2 before anything
    runs; a name close to nothing gets no guess."""
    from uffdprobe.kbuild import recipes
    from uffdprobe.scenarios.registry import select

    public = [s.name for s in select([])]
    assert "cow-leak" in public and "stock" in recipes.names()
    cases = [
        (["run", "cow-lek"], "unknown scenario cow-lek (did you mean cow-leak?)"),
        (["matrix", "--kernel", "host", "--scenario", "cow-lek"], "unknown scenario cow-lek (did you mean cow-leak?)"),
        (["run", "--kernel", "stok"], "did you mean stock?"),
        (["kernel", "build", "stok"], "unknown kernel recipe 'stok': did you mean stock?"),
        (["run", "--expect", "host:cow-lek=LEAK", "cow-leak"], "unknown scenario 'cow-lek'; did you mean cow-leak?"),
    ]
    for argv, said in cases:
        proc = _uffdprobe(*argv)
        assert proc.returncode == Exit.USAGE and proc.stderr.count("\n") == 1 and said in proc.stderr, (
            argv,
            proc.stderr,
        )
    proc = _uffdprobe("run", "zzzz-qqqq")
    assert proc.returncode == Exit.USAGE and "did you mean" not in proc.stderr, proc.stderr


def test_run_numbers_each_row_it_owes():
    """`run` puts [i/N] before the line of each row it owes (N = scenarios × memory kinds × runs), in the
    order they land; a row the plan cannot count ahead (a selftest's case) is indented instead."""
    proc = _uffdprobe("run", "cow-leak", "wp-real-write", "--memory", "anon-4k", "--memory", "anon-thp", "--runs", "2")
    assert proc.returncode == Exit.OK, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if " PASS " in line]
    assert [line.split("]")[0] + "]" for line in lines] == [f"[{i}/8]" for i in range(1, 9)], proc.stdout
    assert lines[0].split()[1:3] == ["cow-leak", "anon-4k"] and lines[-1].split()[1:3] == ["wp-real-write", "anon-thp"]

    from uffdprobe.results.report import Numbered
    from uffdprobe.verdicts import Result, Verdict

    numbered = Numbered([("cow", "-", None)])
    first = numbered.line(Result("cow", "-", Verdict.PASS, "exit 0", {}, {}, {}, 1.0))
    case = numbered.line(Result("cow: a case", "-", Verdict.PASS, "ok", {}, {}, {}, None))
    assert first.startswith("[1/1] cow ") and case.startswith("      cow: a case")


def test_matrix_time_counts_the_selftest_build(monkeypatch, capsys, tmp_path):
    """The matrix summary's time runs from before the kernel and selftest builds, not from the first boot:
    a selftest build held up 2 s (the real build, found in the cache, after a sleep) shows in it, on top of
    the host's own run."""
    import re
    import time
    from uffdprobe.cli.main import main
    from uffdprobe.run import selftests

    real = selftests.binaries

    def slow(*args, **kwargs):
        time.sleep(2)
        return real(*args, **kwargs)

    monkeypatch.setattr(selftests, "binaries", slow)
    status = main(
        [
            "matrix",
            "--kernel",
            "host",
            "--scenario",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--kselftest",
            "cow",
            "--results-dir",
            str(tmp_path / "m"),
        ]
    )
    out, err = capsys.readouterr()
    assert status == Exit.OK, out + err
    ready = float(re.search(r"matrix: selftests ready in ([\d.]+)s", err)[1])
    total = float(re.search(r"matrix: \d+ cell\(s\) on 1 kernel\(s\) in ([\d.]+)s", out)[1])
    host = float(re.search(r"\[1/1\] host: done in ([\d.]+)s", err)[1])
    # counted from the first boot it would be about the host's run alone; each number is rounded to 0.1 s
    assert ready >= 2 and total >= ready + host - 0.1, (ready, host, total)
