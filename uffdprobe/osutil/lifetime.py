# SPDX-License-Identifier: GPL-2.0-only
"""Nothing outlives uffdprobe, whatever kills it. tie() runs once at the start of a host command:

- this process becomes a child subreaper (PR_SET_CHILD_SUBREAPER): a descendant that double-forks or
  calls setsid stays in our tree instead of going to init;
- where a cgroup v2 hierarchy is writable, this process moves into a cgroup of its own
  (uffdprobe-PID beside the one it was in), which every process it starts inherits, daemons included;
- a watchdog (osutil/watchdog.py) starts in a session of its own, outside that cgroup. It waits for
  this process to end, however it ends (a pidfd, so also SIGKILL), noting our descendants meanwhile;
  then it kills the cgroup (cgroup.kill) or every noted descendant, removes the cgroup and the
  temporary folders named after our pid, and exits.

Temporary folders carry their owner's pid (temp_prefix); sweep_stale() removes those whose owner is
provably gone (no such process, or one started after the folder was made: the pid was reused), so a
run killed before its watchdog could act is cleaned by the next.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional

from . import procs
from .children import prctl

PR_SET_CHILD_SUBREAPER = 36
#: The temporary folders that carry their owner's pid: uffdprobe-KIND-PID-random (STALE matches their names).
KINDS = ("exec", "cell")
STALE = re.compile(r"^uffdprobe-(%s)-(\d+)-" % "|".join(KINDS))
#: Set in the environment of everything a tied process starts: a uffdprobe below it is covered already.
TIED = "UFFDPROBE_TIED"


def temp_prefix(kind: str) -> str:
    """The mkdtemp prefix of a temporary folder of kind `kind` (KINDS) owned by this process."""
    return f"uffdprobe-{kind}-{os.getpid()}-"


def tie() -> "Optional[subprocess.Popen[Any]]":
    """Tie everything this process will start to its lifetime (see the module's docstring); the watchdog,
    or None where an ancestor uffdprobe's covers us already or none could start. Never fails a run: where
    the kernel refuses a means (no cgroup v2 we may write), the others still hold."""
    if os.environ.get(TIED):
        return None
    sweep_stale()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    group = _own_cgroup()
    try:
        watchdog = _start_watchdog(group)
    except OSError:
        watchdog = None
    if group is not None:
        try:  # the watchdog stays where we were; we (and all we start from now on) go into our own cgroup
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass
    os.environ[TIED] = str(os.getpid())
    if watchdog is not None:
        import atexit

        atexit.register(_untie, watchdog, group)
    return watchdog


def _start_watchdog(group: Optional[Path]) -> "subprocess.Popen[Any]":
    """The watchdog, with this package on its path, run by sys.executable or else by the very binary
    running us (/proc/self/exe: sys.executable may name one under a folder we cannot enter)."""
    package_parent = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_parent, os.environ.get("PYTHONPATH"))))}
    failure: Optional[OSError] = None
    for exe in dict.fromkeys(filter(None, (sys.executable, "/proc/self/exe"))):
        try:
            return subprocess.Popen(
                [exe, "-m", "uffdprobe.osutil.watchdog", str(os.getpid()), str(group or ""), tempfile.gettempdir()],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            failure = exc
    raise failure or OSError("no interpreter to run the watchdog")


def _untie(watchdog: "subprocess.Popen[Any]", group: Optional[Path]) -> None:
    """At a normal exit: stop what is left below us (bounded), leave and remove our cgroup, and end the
    watchdog, so that nothing of the run, the watchdog included, is alive once we are gone."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        left = [pid for pid in procs.descendants({os.getpid()}, procs.table()) if pid != watchdog.pid]
        for pid in left:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        _reap_adopted(watchdog.pid)
        if not left:
            break
        time.sleep(0.05)
    if group is not None:  # out of it ourselves, then whatever is still in it (left our tree) goes too
        try:
            (group.parent / "cgroup.procs").write_text(str(os.getpid()))
            (group / "cgroup.kill").write_text("1")
            deadline = time.monotonic() + 5.0
            while "populated 1" in (group / "cgroup.events").read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            group.rmdir()
        except OSError:
            pass
    watchdog.kill()
    watchdog.wait()


def _reap_adopted(keep: int) -> None:
    """Reap our zombie children (daemons the subreaper adopted among them), never `keep`."""
    for pid, p in procs.table().items():
        if p.state == "Z" and p.ppid == os.getpid() and pid != keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _own_cgroup() -> Optional[Path]:
    """A new cgroup v2 folder uffdprobe-PID beside ours, or None when there is no writable v2 hierarchy."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            here = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    group = mount / here.lstrip("/") / f"uffdprobe-{os.getpid()}"
    for stale in group.parent.glob("uffdprobe-*"):  # a killed run's whose watchdog was killed too
        owner = stale.name.rpartition("-")[2]
        if owner.isdigit() and procs.start_time(int(owner)) is None:
            try:
                stale.rmdir()  # only an empty one: a cgroup with processes in it refuses
            except OSError:
                pass
    try:
        group.mkdir()
    except OSError:
        return None
    if not (group / "cgroup.kill").exists():  # before 5.14: the watchdog kills what it noted instead
        try:
            group.rmdir()
        except OSError:
            pass
        return None
    return group


def _cgroup2_mount() -> Optional[Path]:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split()[:1] == ["cgroup2"]:
                    return Path(left.split()[4])
    except OSError:
        pass
    return None


def sweep_stale(folder: Optional[str] = None) -> List[str]:
    """Remove uffdprobe-KIND-PID-* folders under `folder` ($TMPDIR) whose owner is provably gone; the
    paths removed."""
    import shutil

    folder = folder or tempfile.gettempdir()
    removed: List[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = STALE.match(name)
        path = os.path.join(folder, name)
        if match and os.path.isdir(path) and not os.path.islink(path) and _owner_gone(int(match.group(2)), path):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                removed.append(path)
    return removed


def _owner_gone(pid: int, path: str) -> bool:
    """No process `pid`, or one that started after `path` was made (the pid was reused)."""
    try:
        made = os.stat(path).st_ctime
    except OSError:
        return False
    return procs.owner_gone(pid, made)
