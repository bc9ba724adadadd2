# SPDX-License-Identifier: GPL-2.0-only
"""One CLI vocabulary: the new names, the old spellings still accepted with a deprecation line, -q/-v, and
--scenario in run as in matrix and bisect."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from uffdprobe.cli.main import build_parser


def _parse(argv, capsys):
    args = build_parser().parse_args(argv)
    return args, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, dest, value, old, new",
    [
        (["boot", "--memory", "512", "K", "--", "true"], "memory", 512, "--memory", "--guest-memory-mb"),
        (["boot", "--timeout", "60", "K", "--", "true"], "timeout", 60.0, "--timeout", "--vm-timeout"),
        (["matrix", "--kernel", "host", "--jobs", "2"], "jobs", 2, "--jobs", "--parallel"),
    ],
)
def test_old_spelling_works_and_says_the_new_one(capsys, argv, dest, value, old, new):
    args, err = _parse(argv, capsys)
    assert getattr(args, dest) == value
    assert old in err and new in err and "deprecated" in err
    new_argv = [new if a == old else a for a in argv]
    args, err = _parse(new_argv, capsys)
    assert getattr(args, dest) == value and err == ""


def test_same_accel_choices_and_verbosity_everywhere(capsys):
    for sub in (["run"], ["matrix", "--kernel", "host"]):
        assert _parse(sub + ["--accel", "auto", "-q"], capsys)[0].verbosity == -1
        assert _parse(sub + ["--accel", "kvm", "-v"], capsys)[0].verbosity == 1
        assert _parse(sub, capsys)[0].verbosity == 0
    assert _parse(["boot", "--accel", "auto", "K", "--", "true"], capsys)[0].accel == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "-q", "-v"])


def test_run_takes_scenarios_by_name_or_by_option(capsys):
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", "--scenario", "no-such-scenario"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "no-such-scenario" in proc.stderr, proc.stderr


@pytest.mark.vm
def test_run_quiet_and_verbose_in_a_guest():
    """-q: no [vm] progress lines; -v: the run directory and QEMU command line too; verdicts either way."""
    out = {}
    for flag in ("-q", "-v"):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "uffdprobe",
                "run",
                flag,
                "--kernel",
                "stock",
                "--memory",
                "anon-4k",
                "--scenario",
                "wp-real-write",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert any(line.startswith("[1/1] wp-real-write ") and " PASS " in line for line in proc.stdout.splitlines())
        out[flag] = proc.stderr
    assert "[vm]" not in out["-q"], out["-q"]
    assert "[vm] booting" in out["-v"] and "QEMU: " in out["-v"] and "qemu-system-x86_64" in out["-v"]


def test_shell_completion_offers_subcommands_and_options(tmp_path):
    pytest.importorskip("argcomplete")
    out = tmp_path / "completions"

    def complete(line: str) -> list:
        env = dict(
            os.environ,
            _ARGCOMPLETE="1",
            COMP_LINE=line,
            COMP_POINT=str(len(line)),
            _ARGCOMPLETE_STDOUT_FILENAME=str(out),
            _ARGCOMPLETE_IFS="\n",
        )
        proc = subprocess.run([sys.executable, "-m", "uffdprobe"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return out.read_text().split("\n")

    assert {"matrix", "doctor"} <= {w.strip() for w in complete("uffdprobe ")}
    assert "--guest-memory-mb" in {w.strip() for w in complete("uffdprobe boot --guest")}


@pytest.mark.skipif(os.geteuid() != 0, reason="wp-real-write needs uffd-wp permission here")
def test_matrix_quiet_drops_progress_keeps_the_table(tmp_path):
    argv = [
        sys.executable,
        "-m",
        "uffdprobe",
        "matrix",
        "--kernel",
        "host",
        "--scenario",
        "wp-real-write",
        "--memory",
        "anon-4k",
        "--results-dir",
    ]
    with ThreadPoolExecutor(2) as pool:  # two real host runs, side by side, each in its own folder
        loud, quiet = pool.map(
            lambda extra: subprocess.run(argv + extra, capture_output=True, text=True, timeout=300),
            [[str(tmp_path / "loud")], [str(tmp_path / "quiet"), "-q"]],
        )
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "matrix: 1 kernel(s)" in loud.stderr and quiet.stderr == ""
    assert "wp-real-write" in quiet.stdout and quiet.stdout.splitlines()[-1].startswith("matrix: 1 cell(s)")
