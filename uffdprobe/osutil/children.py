# SPDX-License-Identifier: GPL-2.0-only
"""Start helper processes (QEMU, virtiofsd) so they can always be killed and reaped."""

import contextlib
import functools
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import procs

PR_SET_PDEATHSIG = 1
#: Set by `uffdprobe matrix` to its pid for each run child: the child stops when the matrix dies.
DIE_WITH_PARENT = "UFFDPROBE_DIE_WITH_PARENT"
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _prepare_child(parent: int) -> None:
    # Runs in the child before exec: undo the mask signals_blocked() set (it is inherited), and
    # have the kernel kill this child if the harness dies, even by SIGKILL. A harness killed between
    # fork and prctl would never send that signal: then the child's parent is already another one.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SHUTDOWN_SIGNALS)
    try:
        _prctl()(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass
    if os.getppid() != parent:
        os._exit(1)


@contextlib.contextmanager
def signals_raise(
    exception: Callable[[str], BaseException], sigs: Tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)
) -> Iterator[None]:
    """While inside, each of `sigs` raises exception(SIGNAL_NAME) in the main thread, so the cleanup that
    Ctrl-C runs (stop and reap children, keep what was written) runs for it too; the handlers before are
    back on leaving. Main thread only (elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise exception(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send us `sig` when the process that started us dies (even by SIGKILL); False when
    it is already gone."""
    _prctl()(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return os.getppid() == parent_pid


@functools.lru_cache(maxsize=None)
def _prctl() -> Callable[..., int]:
    """libc's prctl(). ctypes is imported on first use, not with this module: the guest's `uffdprobe run`
    (under TCG every import costs) never needs it. spawn() loads it before fork, so no child imports."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def prctl(option: int, value: int) -> int:
    """libc's prctl(option, value, 0, 0, 0): its return value (-1 on error, errno not raised)."""
    return int(_prctl()(option, value, 0, 0, 0))


#: Where a child's output goes, as subprocess takes it: a file descriptor, a file, DEVNULL/STDOUT, or ours.
Sink = Union[int, IO[Any], None]


def spawn(argv: Sequence[str], *, stdout: Sink, stderr: Sink, cwd: Optional[str] = None) -> "subprocess.Popen[bytes]":
    """Start argv in its own session (so Ctrl-C reaches only us) and tied to our lifetime."""
    _prctl()
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=functools.partial(_prepare_child, os.getpid()),
        close_fds=True,
    )


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM/SIGHUP so a child cannot start without us keeping its handle."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


@contextlib.contextmanager
def signals_ignored(
    sigs: Iterable[int] = SHUTDOWN_SIGNALS, on_signal: Optional[Callable[[], object]] = None
) -> Iterator[None]:
    """While cleaning up after an interrupt, a further signal of `sigs` only calls on_signal() (if given)
    instead of cutting the cleanup short. Main thread only (elsewhere it does nothing). Unlike
    signals_blocked() it holds in a process with threads: a signal blocked here is handed to another
    thread, and Python runs the handler in the main thread all the same."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, lambda *_: on_signal and on_signal()) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def stop(proc: "Optional[subprocess.Popen[Any]]", grace: float = 3.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after grace seconds, and reap it (QEMU, virtiofsd,
    run children); a Ctrl-C meanwhile waits until the child is gone."""
    if proc is not None:
        stop_group(proc, grace=grace, hold_signals=True)


@dataclass
class Stopped:
    """How a process group ended under stop_group()."""

    exit: Optional[int]  #: the leader's exit status; None when it was reaped elsewhere or could not be
    reaped: bool  #: the leader is gone and reaped
    signalled: bool  #: the first signal reached a live leader
    killed: bool  #: SIGKILL was needed: the group did not end within the grace period
    stragglers: bool  #: processes were still in the group after its leader ended (and were SIGKILLed)


def stop_group(
    leader: "Union[subprocess.Popen[Any], int]",
    first: Optional[int] = signal.SIGTERM,
    grace: float = 3.0,
    kill_wait: float = 10.0,
    wait_for_group: bool = False,
    hold_signals: bool = False,
) -> Stopped:
    """Stop the process group led by `leader` (a Popen or the pid of our own child, started in a session or
    group of its own) and reap the leader. The one way uffdprobe stops a process tree:

    `first` (None: none) goes to the whole group; it gets `grace` seconds to end by itself (its leader, or
    every member with `wait_for_group`); then SIGKILL and up to `kill_wait` seconds for the leader; whatever
    is left in the group after that is SIGKILLed until none is (bounded by `kill_wait` too). With
    `hold_signals` a SIGINT/SIGTERM/SIGHUP arriving meanwhile waits until the group is gone."""
    proc = _Leader(leader)
    with signals_blocked() if hold_signals else contextlib.nullcontext():
        signalled = killed = stragglers = False
        if first is not None and not proc.done():
            signalled = _signal_group(proc.pid, first)

        def ended() -> bool:
            return proc.done() and not (wait_for_group and _group_alive(proc.pid))

        if not _wait(ended, grace):
            killed = True
            _signal_group(proc.pid, signal.SIGKILL)
            _signal_pid(proc.pid, signal.SIGKILL)
            _wait(proc.done, kill_wait)
        if proc.done():  # orphans of the leader (virtiofsd's child, make's compilers) go too
            deadline = time.monotonic() + kill_wait
            while _live_members(proc.pid) and time.monotonic() < deadline:
                stragglers = True
                _signal_group(proc.pid, signal.SIGKILL)
                time.sleep(0.05)
    return Stopped(exit=proc.status, reaped=proc.done(), signalled=signalled, killed=killed, stragglers=stragglers)


class _Leader:
    """Non-blocking reaping of a Popen or of a child pid, keeping its exit status."""

    def __init__(self, leader: "Union[subprocess.Popen[Any], int]") -> None:
        self.popen: "Optional[subprocess.Popen[Any]]" = None
        if isinstance(leader, subprocess.Popen):
            self.popen, self.pid = leader, leader.pid
        else:
            self.pid = int(leader)
        self.status: Optional[int] = None
        self._done = False

    def done(self) -> bool:
        if self._done:
            return True
        if self.popen is not None:
            self.status = self.popen.poll()
            self._done = self.status is not None
            return self._done
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere
            self._done = True
            return True
        if pid:
            self.status, self._done = os.waitstatus_to_exitcode(status), True
        return self._done


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its credentials: it is there, we cannot signal it
        return True


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _group_alive(pgid: int) -> bool:
    return bool(_live_members(pgid))


def _live_members(pgid: int) -> List[int]:
    """The processes of group `pgid` that are not zombies (a zombie waits for its parent, not for us)."""
    return [pid for pid, p in procs.table().items() if p.pgrp == pgid and p.state != "Z"]
