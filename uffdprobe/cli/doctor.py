# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe doctor`: what this machine can do, what is missing and the exact fix; exit 0 when the main job
can run, 2 (set-up problem) when something it needs is missing."""

import argparse
from dataclasses import asdict

from uffdprobe.exitcodes import Exit
from uffdprobe.run import doctor
from .vocab import write_json


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="what this machine can do, what is missing, and how to fix it")
    p.add_argument("--json", metavar="FILE|-", help="write the checks as JSON to FILE (- for stdout)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.json:
        from uffdprobe.osutil import outputs

        outputs.check_all([("--json", args.json)])
    checks = doctor.diagnose()
    ready = doctor.ready(checks)
    if args.json:
        write_json(args.json, {"ready": ready, "checks": [asdict(c) for c in checks]})
        return Exit.OK if ready else Exit.SETUP
    for c in checks:
        mark = "ok" if c.ok else ("MISSING" if c.needed else "note")
        print(f"{mark:8} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            print(f"{'':8}   fix: {c.fix}")
    needed, everything = doctor.apt_line(checks, True), doctor.apt_line(checks, False)
    if needed:
        print(f"\nneeded by the main job, as root: {needed}")
    if everything and everything != needed:
        print(f"everything missing, as root: {everything}")
    print(
        "\nready: the main job can run here"
        if ready
        else "\nnot ready: fix the MISSING lines above, then run uffdprobe doctor again"
    )
    return Exit.OK if ready else Exit.SETUP
