# SPDX-License-Identifier: GPL-2.0-only
"""`--scenarios-from FILE.py` (run, list, matrix): users' own scenarios next to the built-ins
(uffdprobe.scenarios.sources loads them, with the entry point group's)."""

import argparse
from typing import List

from uffdprobe.scenarios import sources


def add_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenarios-from",
        action="append",
        default=[],
        metavar="FILE.py",
        help="repeatable: a Python file whose SCENARIOS list adds your own scenarios (installed "
        f"packages add theirs through the entry point group {sources.ENTRY_POINT_GROUP})",
    )


def load(args: argparse.Namespace) -> List[str]:
    """Every user source, before any name is looked up; a bad one is a UsageError (one line, exit 2).
    Returns the files loaded as absolute paths, as a child's or a guest's argv passes them on."""
    sources.load(getattr(args, "scenarios_from", None) or [])
    return sources.files()


def check_guests_see(targets, files):
    """`files` (the loaded --scenarios-from paths), once every guest among the matrix's kernels can load
    them; a file under /tmp (or another folder the guest covers) is refused before any build."""
    from uffdprobe.run.user_scenarios import check_visible_to

    check_visible_to(targets)
    return list(files)
