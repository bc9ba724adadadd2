# SPDX-License-Identifier: GPL-2.0-only
"""`--exec -- PROGRAM ARGS...` for `run` and `matrix`: everything after --exec is the program's command
line (split off before argparse sees it), plus the options that go with it."""

import argparse
import os
import re
import shutil
from typing import List, Optional, Tuple

from uffdprobe.exitcodes import UsageError
from .vocab import whole_number

#: The subcommands that take --exec.
TAKES_EXEC = ("run", "matrix")
#: A row label: safe as a folder name part, a JUnit classname part and an --expect key.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
SCRATCH_FS = ("ext4", "none")


def split(argv: List[str]) -> Tuple[List[str], Optional[List[str]]]:
    """(our arguments, the program's argv or None): for run and matrix, whatever follows `--exec` (and
    the `--` after it, if any) belongs to the program, even words that look like our options."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in TAKES_EXEC:
        return argv, None
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word == "--exec":
            program = argv[i + 1 :]
            return argv[:i], program[1:] if program[:1] == ["--"] else program
    return argv, None


def add_options(p: argparse.ArgumentParser, seconds) -> None:
    """The --exec options (the program itself is split off by split())."""
    p.add_argument(
        "--exec",
        dest="exec_placeholder",
        action="store_true",
        help="-- PROGRAM ARGS...: run PROGRAM as a supervised workload (a row named after its file "
        "name; must come last). HANG (blocked in handle_userfault with unanswered faults, then "
        "rescued), STUCK, PASS (exit 0) or FAIL",
    )
    p.add_argument("--exec-label", metavar="NAME", help="the --exec row's name (default: the program's file name)")
    p.add_argument(
        "--scratch-fs",
        choices=SCRATCH_FS,
        help="format the scratch disk (the guest's own, or a blank --odirect-target device) with this "
        "filesystem, mount it, and give it to the program as UFFDPROBE_SCRATCH_DIR and its "
        "working directory (O_DIRECT scenarios write there too); default: ext4 for an --exec "
        "program in a guest (its own blank disk; a guest's /tmp takes no O_DIRECT), none on "
        "the host",
    )
    p.add_argument(
        "--scratch-mb",
        type=whole_number(16, 65536, "MiB"),
        default=None,
        metavar="N",
        help="with --kernel: the guest's scratch disk size in MiB (a sparse file; default 64)",
    )
    p.add_argument(
        "--stuck-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="--exec: a task in D outside handle_userfault, or spinning, this long is STUCK (default 30)",
    )
    p.add_argument(
        "--rescue-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="--exec: after a rescue's last answer the program gets this long to finish (default 30)",
    )
    p.set_defaults(exec=None)


def check(args: argparse.Namespace) -> Tuple[Optional[List[str]], Optional[str]]:
    """The --exec program with an absolute path, and its row's name (both None without --exec); UsageError
    for a program that is missing or not executable, a bad label, or options given without --exec."""
    if args.exec is None:
        if args.exec_label:
            raise UsageError("--exec-label names the row of an --exec program: add --exec -- PROGRAM ARGS")
        return None, None
    if not args.exec:
        raise UsageError("--exec needs a program: --exec -- PROGRAM ARGS... (last on the command line)")
    found = shutil.which(args.exec[0]) if "/" not in args.exec[0] else args.exec[0]
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise UsageError(f"--exec {args.exec[0]}: not an executable file (nor found on PATH)")
    row = args.exec_label or os.path.basename(found)
    from uffdprobe.scenarios.registry import SCENARIOS

    if not LABEL.match(row) or row in SCENARIOS:
        raise UsageError(
            f"--exec row name {row!r}: give --exec-label NAME (letters, digits, _ . + -, not a scenario's name)"
        )
    from uffdprobe.scenarios.rows import declare

    declare(row)
    return [os.path.abspath(found)] + list(args.exec[1:]), row


def list_programs() -> None:
    """`uffdprobe list`: the programs uffdprobe ships for --exec, with the path to give it."""
    from uffdprobe.uffd import programs

    for name, (_source, what) in programs.PROGRAMS.items():
        try:
            where = str(programs.path(name))
        except (UsageError, OSError) as exc:
            where = f"unavailable: {exc}"
        print(
            f"{name} (a program for --exec)\n  what: {what}\n  path: {where}\n"
            f"  run: uffdprobe run --kernel KERNEL --scratch-fs ext4 --exec -- {where}"
        )
