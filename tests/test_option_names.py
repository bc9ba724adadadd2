# SPDX-License-Identifier: GPL-2.0-only
"""One spelling per idea across subcommands: --json and --ktap always take FILE (- for stdout), an output
folder is always --results-dir; the old spellings still work for one release, each with one line on stderr
naming its replacement."""

import argparse
import json
import subprocess
import sys

from uffdprobe.cli.main import build_parser
from uffdprobe.exitcodes import Exit

DEPRECATED = "is deprecated"


def _parsers():
    """(subcommand, parser) for every subcommand."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices.items()


def _visible(parser):
    return {o: a for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings}


def test_json_and_ktap_take_a_file_and_folders_are_results_dir():
    seen = set()
    for name, parser in _parsers():
        options = _visible(parser)
        for option in ("--json", "--ktap"):
            if option in options:
                seen.add((name, option))
                assert options[option].nargs is None and options[option].metavar in ("FILE", "FILE|-"), (
                    name,
                    option,
                )  # one value: FILE, or - for stdout
        assert not {"--work-dir", "--run-dir", "--out-dir", "--output-dir"} & set(options), name
    assert {
        ("run", "--ktap"),
        ("features", "--json"),
        ("doctor", "--json"),
        ("boot", "--json"),
        ("run", "--json"),
        ("matrix", "--ktap"),
        ("check", "--json"),
    } <= seen
    folders = {name for name, parser in _parsers() if "--results-dir" in _visible(parser)}
    assert {"run", "matrix", "check", "bisect", "bisect-step", "boot"} <= folders


def _uffdprobe(*argv, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *argv], capture_output=True, text=True, timeout=timeout, cwd="/"
    )


def _said_once(stderr: str, old: str, new: str) -> None:
    lines = [line for line in stderr.splitlines() if DEPRECATED in line]
    assert len(lines) == 1 and old in lines[0] and new in lines[0], stderr


def test_the_old_stdout_flags_still_print_on_stdout():
    new = _uffdprobe("features", "--json", "-")
    old = _uffdprobe("features", "--json")
    assert new.returncode == old.returncode == Exit.OK and DEPRECATED not in new.stderr
    assert json.loads(old.stdout)["kernel"] == json.loads(new.stdout)["kernel"]
    _said_once(old.stderr, "features --json", "--json -")

    old = _uffdprobe("run", "--ktap", "cow-leak", "--memory", "anon-4k")  # the scenario stays a scenario
    assert old.returncode == Exit.OK, old.stderr
    assert old.stdout.startswith("KTAP version 1\n") and "ok 1 cow-leak.anon-4k" in old.stdout
    assert "wp-real-write" not in old.stdout
    _said_once(old.stderr, "run --ktap", "--ktap -")


def test_run_ktap_writes_a_file(tmp_path):
    out = tmp_path / "run.ktap"
    proc = _uffdprobe("run", "cow-leak", "--memory", "anon-4k", "--ktap", str(out))
    assert proc.returncode == Exit.OK and DEPRECATED not in proc.stderr, proc.stderr
    assert "[1/1] cow-leak" in proc.stdout  # the table stays on stdout: the KTAP went to the file
    assert out.read_text().startswith("KTAP version 1\n") and "ok 1 cow-leak.anon-4k" in out.read_text()


def test_a_word_that_could_be_a_name_is_never_written_as_a_file(tmp_path):
    """During the deprecation a bare old flag may be followed by a word that is a name or a FILE; where it
    could be either, nothing is written to it: a file of that name in the working folder stays as it was."""
    kept = tmp_path / "myscen"
    kept.write_bytes(b"not ours\n")
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", "--ktap", "myscen"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == Exit.USAGE and "myscen" in proc.stderr, proc.stderr  # an unknown scenario
    assert kept.read_bytes() == b"not ours\n"
    proc = _uffdprobe("boot", "--json", str(tmp_path / "no-such-kernel"), "--", "true")
    assert proc.returncode == Exit.USAGE and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "no-such-kernel").exists()  # read as a FILE only when it is not a KERNEL: refused


def test_the_old_folder_names_still_work(tmp_path):
    proc = _uffdprobe(
        "bisect-step", "--tree", str(tmp_path / "no-tree"), "--scenario", "cow-leak", "--work-dir", str(tmp_path / "w")
    )
    assert proc.returncode == Exit.SETUP
    _said_once(proc.stderr, "--work-dir", "--results-dir")
    proc = _uffdprobe("boot", "--run-dir", str(tmp_path / "r"), "stock")  # no command: refused after parsing
    assert proc.returncode == Exit.SETUP and "no guest command" in proc.stderr
    _said_once(proc.stderr, "--run-dir", "--results-dir")
