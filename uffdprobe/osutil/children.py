"""Start helper processes (QEMU, virtiofsd) so they can always be killed and reaped."""

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time

PR_SET_PDEATHSIG = 1
#: Set by `uffdprobe matrix` to its pid for each run child: the child stops when the matrix dies.
DIE_WITH_PARENT = "UFFDPROBE_DIE_WITH_PARENT"
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _prepare_child():
    # Runs in the child before exec: undo the mask signals_blocked() set (it is inherited), and
    # have the kernel kill this child if the harness dies, even by SIGKILL.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SHUTDOWN_SIGNALS)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def die_with_parent(parent_pid: int, sig=signal.SIGTERM) -> bool:
    """Have the kernel send us `sig` when the process that started us dies (even by SIGKILL); False when
    it is already gone."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return os.getppid() == parent_pid


def spawn(argv, *, stdout, stderr, cwd=None) -> subprocess.Popen:
    """Start argv in its own session (so Ctrl-C reaches only us) and tied to our lifetime."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd,
                            start_new_session=True, preexec_fn=_prepare_child, close_fds=True)


@contextlib.contextmanager
def signals_blocked():
    """Hold back SIGINT/SIGTERM/SIGHUP so a child cannot start without us keeping its handle."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


@contextlib.contextmanager
def signals_ignored(sigs=SHUTDOWN_SIGNALS, on_signal=None):
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


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after grace seconds, and reap it."""
    if proc is None:
        return
    with signals_blocked():
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            _signal_group(proc, sig)
            deadline = time.monotonic() + wait
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        _signal_group(proc, signal.SIGKILL)  # stragglers in the group (virtiofsd's own child)
        if proc.poll() is None:
            proc.wait(timeout=10)


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
