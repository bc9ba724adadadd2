# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe payload OUT`: the one-file zipapp a lab board (LAVA, tuxrun) runs with its own Python."""

import argparse
import errno
import sys
from pathlib import Path

from uffdprobe.exitcodes import Exit


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `payload` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "payload",
        help="write a one-file zipapp that runs uffdprobe on a board with only a Python",
        description="Write OUT (e.g. uffdprobe.pyz), one file that runs `uffdprobe ARGS` as `python3 OUT ARGS` "
        "on a machine with nothing but a Python 3.9+ and a libc: this uffdprobe with its compiled "
        "bindings, psutil, and cffi's backend for this Python (and for each --cffi-wheel's). On the "
        "board: `python3 uffdprobe.pyz run --ktap -` asks the running kernel every scenario.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="the file to write (replaced whole)")
    p.add_argument(
        "--cffi-wheel",
        action="append",
        type=Path,
        default=[],
        metavar="WHEEL",
        help="also carry the cffi backend of this cffi wheel, for a board whose Python differs from "
        "this one (pip download --only-binary :all: --python-version 3.9 cffi); repeatable",
    )
    p.set_defaults(func=run_payload)
    return p


def run_payload(args) -> int:
    """Handler of `payload`: build, then say where and how big."""
    from uffdprobe.run import payload

    try:
        size = payload.build(args.out, args.cffi_wheel)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # main says where space ran out: exit 6
        print(
            f"uffdprobe payload: cannot write {args.out}: {exc.strerror} ({exc.filename or args.out}); give a "
            f"path in a folder you can write",
            file=sys.stderr,
        )
        return Exit.SETUP
    print(
        f"uffdprobe payload: wrote {args.out} ({size // 1024} KiB); run it as `python3 {args.out.name} run --ktap -`",
        file=sys.stderr,
    )
    return Exit.OK
