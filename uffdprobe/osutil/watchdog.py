# SPDX-License-Identifier: GPL-2.0-only
"""The watchdog lifetime.tie() starts: `python -m uffdprobe.osutil.watchdog PID CGROUP TMPDIR`.

It runs in a session of its own, outside PID's cgroup, and outlives PID whatever ends it. While PID
lives it notes PID's descendants (pid and start time) every POLL_S when there is no cgroup (with one,
it only waits). Once PID has ended (its pidfd turns readable) it kills the cgroup CGROUP (cgroup.kill)
when one is given, then every noted process that is still the same process, every process whose
environment carries UFFDPROBE_TIED=PID, and their descendants, until none is left (bounded); it
removes CGROUP and TMPDIR/uffdprobe-KIND-PID-* and exits."""

import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Set

from . import procs
from .lifetime import STALE

POLL_S = 0.2
KILL_BOUND_S = 10.0


def _kill_cgroup(group: Path) -> None:
    try:
        (group / "cgroup.kill").write_text("1")
    except OSError:
        return
    deadline = time.monotonic() + KILL_BOUND_S
    while time.monotonic() < deadline:
        try:
            if "populated 0" in (group / "cgroup.events").read_text():
                break
        except OSError:
            break
        time.sleep(0.05)
    try:
        group.rmdir()
    except OSError:
        pass


def _carries_mark(pid: int, mark: bytes) -> bool:
    """Whether process `pid`'s environment holds `mark` (UFFDPROBE_TIED=OWNER, inherited by all the run
    starts); False when it cannot be read (another user's process: not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return mark in b"\0" + f.read()
    except OSError:
        return False


def _kill_noted(noted: Dict[int, int], owner: int) -> None:
    """SIGKILL every noted process that is still the same one (same start), every process carrying the
    run's mark in its environment (a daemon that left our tree before we could note it), and whatever
    they start meanwhile, until none is left or KILL_BOUND_S has passed."""
    mark = b"\0UFFDPROBE_TIED=%d\0" % owner
    deadline = time.monotonic() + KILL_BOUND_S
    while time.monotonic() < deadline:
        table = {pid: p for pid, p in procs.table().items() if p.state != "Z"}
        live = {pid for pid, started in noted.items() if pid in table and table[pid].started == started}
        live |= {pid for pid in table if _carries_mark(pid, mark)}
        live |= set(procs.descendants(live, table))
        live.discard(os.getpid())
        if not live:
            return
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def _remove_temp(tmpdir: str, owners: Set[int]) -> None:
    """The temporary folders (lifetime.KINDS: uffdprobe-exec-PID-*, uffdprobe-cell-PID-*) of the processes
    we killed."""
    import shutil

    try:
        names = os.listdir(tmpdir)
    except OSError:
        return
    for name in names:
        match = STALE.match(name)
        if match and int(match.group(2)) in owners:
            shutil.rmtree(os.path.join(tmpdir, name), ignore_errors=True)


def watch(owner: int, group: Optional[Path], tmpdir: str) -> None:
    """Wait for `owner` to end, noting its descendants; then leave nothing of it behind."""
    noted: Dict[int, int] = {}
    try:
        pidfd = os.pidfd_open(owner)
    except OSError:
        pidfd = None
    while True:
        if pidfd is not None:
            # with a cgroup, cgroup.kill reaches every process of the run: no need to note them (and scan
            # /proc every POLL_S on a busy machine); without one, the notes are all there is
            if select.select([pidfd], [], [], None if group is not None else POLL_S)[0]:
                break
        else:
            time.sleep(POLL_S)
            if not os.path.exists(f"/proc/{owner}"):
                break
        table = procs.table()
        if owner not in table or table[owner].state == "Z":
            break
        noted.update({pid: p.started for pid, p in procs.descendants({owner}, table).items()})
    if group is not None:
        _kill_cgroup(group)
    _kill_noted(noted, owner)
    _remove_temp(tmpdir, set(noted) | {owner})


def main(argv: List[str]) -> int:
    """Entry point: argv is [PID, CGROUP or '', TMPDIR]."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the run; the run's end is ours
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    owner, group, tmpdir = int(argv[0]), argv[1], argv[2]
    watch(owner, Path(group) if group else None, tmpdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
