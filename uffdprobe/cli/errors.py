# SPDX-License-Identifier: GPL-2.0-only
"""The one mapping from an expected error to what the user reads and the exit status it ends with:
every UffdprobeError (its own line and status), a full disk (exit 6) and a report FIFO nobody reads. cli/main.py prints it; a run
also records the same line and status in its run.json."""

import errno
import os
from pathlib import Path
from typing import Optional, Tuple

from uffdprobe.exitcodes import Exit, UffdprobeError

#: The prefix of a line said by no subcommand of its own.
PREFIX = "uffdprobe"


def expected(exc: BaseException, prefix: str = PREFIX) -> Optional[Tuple[str, str, int]]:
    """(the prefix to say it with, its one line, its exit status) for an error uffdprobe expects; None for
    anything else (cli/main.py's last resort logs its traceback)."""
    if isinstance(exc, UffdprobeError):
        return prefix, str(exc), int(exc.exit_code)
    if isinstance(exc, OSError) and exc.errno == errno.ENXIO and exc.filename:  # a report FIFO nobody reads
        return PREFIX, f"cannot write {exc.filename}: {exc.strerror}", int(Exit.SETUP)  # (osutil.outputs)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = exc.filename or "a file"
        return (
            PREFIX,
            (
                f"no space left writing {where} ({exc.strerror}); free space on the disk that holds "
                f"it{_or_move_the_cache(exc.filename)}; files written before are kept"
            ),
            int(Exit.NO_SPACE),
        )
    return None


def _or_move_the_cache(path: Optional[str]) -> str:
    """For a file in uffdprobe's cache, the other fix: a cache on a larger disk (XDG_CACHE_HOME)."""
    try:
        from uffdprobe.osutil.files import cache_home

        inside = path and Path(os.path.abspath(path)).is_relative_to(cache_home().resolve())
    except Exception:
        return ""
    return " or point XDG_CACHE_HOME at a larger disk" if inside else ""
