# SPDX-License-Identifier: GPL-2.0-only
"""Running make for a kernel build: bounded, logged, with a one-line progress display on stderr."""

import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Tuple

from .errors import NO_SPACE_TEXT, BuildFailed, SetupError, no_space
from uffdprobe.osutil import children
from uffdprobe.osutil.files import disk_full

BUILD_TIMEOUT = 3600.0  # seconds; a cold tinyconfig-based build takes about 6-9 min on 2 cores
_STEP = re.compile(
    r"^\s+(CC|AS|LD|AR|OBJCOPY|GEN|HOSTCC|HOSTLD|UPD|MODPOST|ZOFFSET|VOFFSET|MKPIGGY)"
    r"(?: \[\w+\])?\s+(\S+)"
)


def compiler() -> str:
    """CC for make: `ccache gcc` when ccache is installed, else `gcc`."""
    if not shutil.which("gcc"):
        raise SetupError("gcc is not installed: apt-get install build-essential bc flex bison libelf-dev libssl-dev")
    return "ccache gcc" if shutil.which("ccache") else "gcc"


def compiler_id() -> str:
    """First line of `gcc --version`: part of the cache inputs (the .config records it too)."""
    out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.stdout else "gcc"


def make_argv(tree: Path, build: Path) -> list:
    """make invocation shared by configure and build steps (same CC, so .config matches)."""
    if not shutil.which("make"):
        raise SetupError("make is not installed: apt-get install make")
    return ["make", "-C", str(tree), f"O={build}", f"CC={compiler()}"]


class Progress:
    """One updating stderr line on a terminal (otherwise a line at the first step, the first compile and every
    30 s): elapsed, CC count (of the total a previous cold build of the same base compiled, and an ETA, once
    `expect` was told it), last step."""

    def __init__(self, label: str, enabled: bool = True):
        self.label, self.enabled = label, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.compiled = 0
        self.last = ""
        self.shown = 0.0
        self.total: Optional[int] = None  # files a previous cold build of this base compiled
        self.previous_s = 0.0
        self.cold = False
        self.make_started = self.start

    def expect(self, previous: Optional[dict]) -> None:
        """A cold build starts: `previous` is the last cold build of the same base ({"compiled", "seconds"})
        or None (the first: no total, no ETA)."""
        self.cold, self.make_started = True, time.monotonic()
        if previous:
            self.total, self.previous_s = int(previous["compiled"]), float(previous["seconds"])
            self.note(f"a cold build: the last of this base compiled {self.total} files in {_clock(self.previous_s)}")
        else:
            self.note("a cold build, the first of this base here: no total or ETA until it is done")

    def note(self, text: str) -> None:
        if self.enabled:
            self._clear()
            print(f"kbuild [{self.label}]: {text}", file=sys.stderr, flush=True)

    def step(self, line: str) -> None:
        m = _STEP.match(line)
        if not m:
            return
        if m.group(1) == "CC":
            self.compiled += 1
        self.last = m.group(2)
        now = time.monotonic()
        first_compile = m.group(1) == "CC" and self.compiled == 1
        if self.enabled and (now - self.shown >= (0.5 if self.tty else 30.0) or first_compile):
            self.shown = now
            text = f"kbuild [{self.label}]: {self._elapsed()}  {self.count()}  {self.last}"
            if self.tty:
                sys.stderr.write("\r\033[K" + text[:150])
                sys.stderr.flush()
            else:
                print(text, file=sys.stderr, flush=True)

    def count(self) -> str:
        """'412 compiled', or with a known total '412/975 compiled, ETA 03:10' (a first cold build says so)."""
        if self.total is None:
            return f"{self.compiled} compiled" + (" (first build)" if self.cold else "")
        return f"{self.compiled}/{self.total} compiled, ETA {_clock(self.eta())}"

    def eta(self) -> float:
        """Seconds left: at this build's own rate per file once it has compiled a few, before that what the
        previous cold build took, less the time gone."""
        took = time.monotonic() - self.make_started
        left = max((self.total or 0) - self.compiled, 0)
        if self.compiled >= 20:
            return took / self.compiled * left
        return max(self.previous_s - took, 0.0)

    def finish(self, text: str) -> None:
        self.note(f"{text} in {self._elapsed()} ({self.compiled} files compiled)")

    def made(self) -> Optional[dict]:
        """What this cold build compiled and how long make took, for the next one's total and ETA (None for
        a build that was not cold)."""
        if not self.cold or not self.compiled:
            return None
        return {"compiled": self.compiled, "seconds": round(time.monotonic() - self.make_started, 1)}

    def _elapsed(self) -> str:
        return _clock(time.monotonic() - self.start)

    def _clear(self) -> None:
        if self.tty and self.shown:
            sys.stderr.write("\r\033[K")


def _clock(seconds: float) -> str:
    secs = int(seconds)
    return f"{secs // 60:02d}:{secs % 60:02d}"


def make_env(work: Path) -> dict:
    """Environment for make: ccache rewrites paths under the workspace, so any workspace hits its cache."""
    env = dict(os.environ)
    env.setdefault("CCACHE_BASEDIR", str(work))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    return env


def run_make(
    argv: list, log_path: Path, progress: Progress, timeout: float = BUILD_TIMEOUT, env: dict = None, disk: Path = None
) -> None:
    """Run make, appending its output to `log_path`; BuildFailed (with the first error) on failure or timeout.

    NoSpace when the disk fills (`disk`, default the log's directory, is named in the message).
    Interrupted or timed out, make's whole process group is stopped and reaped before this
    returns or raises, and a make that had to be SIGKILLed has its half-written outputs removed.
    """
    log_path = Path(log_path)
    disk = disk or log_path.parent
    objtree = next((Path(a[2:]) for a in argv if a.startswith("O=")), None)
    try:
        with open(log_path, "a", buffering=1) as log:
            status, timed_out = run_logged(
                argv, log, "building", timeout, disk, env=env, watch=progress.step, objtree=objtree
            )
    except OSError as exc:  # closing the log on a full disk
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise no_space(disk, "building", _kept(log_path)) from None
    if timed_out:
        raise BuildFailed(f"build timed out after {timeout:.0f} s; build log: {log_path}", log=log_path)
    if status != 0:
        raise BuildFailed(
            f"build failed (make exit {status}): {first_error(log_path)}; build log: {log_path}", log=log_path
        )


def run_logged(
    argv: list,
    log,
    what: str,
    timeout: float,
    disk: Path,
    cwd=None,
    env: dict = None,
    watch: Callable[[str], None] = None,
    objtree: Path = None,
) -> Tuple[int, bool]:
    """run_watched() with every output line appended to the open text file `log` (and given to `watch`).

    Returns (exit status, timed out). Raises NoSpace naming `disk` when the command reports a
    full disk, the log cannot be written, or the command failed with `disk` (almost) full.
    `objtree`: where a SIGKILLed make's outputs are scrubbed (scrub_outputs).
    """
    full = []

    def on_line(line: str) -> None:
        log.write(line)
        if watch:
            watch(line)
        if NO_SPACE_TEXT in line:
            full.append(line)

    try:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        started = os.fstat(log.fileno()).st_mtime_ns  # the file system's clock: outputs made later are >=
        status, timed_out = run_watched(
            argv, on_line, timeout, cwd=cwd, env=env, on_killed=lambda: scrub_outputs(objtree, started)
        )
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        full.append(str(exc))
        status, timed_out = -1, False
    if full or (status != 0 and disk_full(disk)):
        raise no_space(disk, what, _kept(Path(log.name)))
    return status, timed_out


def run_watched(
    argv: list,
    on_line: Callable[[str], None],
    timeout: float,
    cwd=None,
    env: dict = None,
    on_killed: Callable[[], None] = None,
) -> Tuple[int, bool]:
    """Run `argv` in a session of its own, feeding each line of its stdout+stderr to `on_line`.

    Returns (exit status, timed out). At the time limit, or on any exception (Ctrl-C, SIGTERM
    turned into KeyboardInterrupt, an error raised by `on_line`), the whole process group gets
    SIGTERM, so GNU make deletes the targets it was writing, then SIGKILL after STOP_GRACE
    seconds; `on_killed` runs when that SIGKILL was needed (make could not clean up). Every
    process of the group is gone before this returns or re-raises.
    """
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        cwd=cwd,
        env=env,
    )
    group = _Group(proc, on_killed)
    timer = threading.Timer(timeout, group.stop, kwargs={"timed_out": True})
    timer.daemon = True
    timer.start()
    try:
        for line in proc.stdout:
            on_line(line)
        status = proc.wait(timeout=STOP_GRACE + 60)
    except BaseException:
        timer.cancel()
        with children.signals_ignored():  # a second Ctrl-C must not cut the cleanup short
            group.stop()
            _drain(proc.stdout, on_line)  # make's last words ("Deleting file ...") still go to the log
        raise
    finally:
        timer.cancel()
        proc.stdout.close()
    group.stop()  # a finished make leaves nothing behind, but a timed-out one may have
    return status, group.timed_out


def _drain(stream, on_line: Callable[[str], None]) -> None:
    """Pass on what a stopped group left in its pipe, without waiting for more; best effort."""
    try:
        os.set_blocking(stream.fileno(), False)
        rest = stream.read() or ""
        for line in rest.splitlines(keepends=True):
            on_line(line)
    except Exception:  # the original exception is what matters
        pass


STOP_GRACE = 20.0  # seconds make gets after SIGTERM to delete its half-written targets and exit


class _Group:
    """The process group of a child started with start_new_session: stopped once, politely first."""

    def __init__(self, proc: subprocess.Popen, on_killed=None):
        self.proc, self.on_killed = proc, on_killed
        self.timed_out = False
        self.lock = threading.Lock()

    def stop(self, timed_out: bool = False) -> None:
        with self.lock:
            if timed_out and self.proc.poll() is None:
                self.timed_out = True
            ended = children.stop_group(self.proc, signal.SIGTERM, grace=STOP_GRACE, kill_wait=30.0)
            # a make that finished by itself wrote whole files; one we stopped may not have
            if (ended.killed or (ended.signalled and ended.stragglers)) and self.on_killed:
                self.on_killed()


def scrub_outputs(objtree: Optional[Path], since_ns: int) -> list:
    """Remove every file make wrote under `objtree` since `since_ns` (but .config): after a SIGKILL, make
    could not delete its half-written targets, and a truncated .o newer than its source would be
    taken as up to date by the next build. Returns what was removed."""
    removed = []
    if objtree is None or not objtree.is_dir():
        return removed
    for dirpath, _, names in os.walk(objtree):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if st.st_mtime_ns >= since_ns and name != ".config" and stat.S_ISREG(st.st_mode):
                    os.unlink(path)
                    removed.append(path)
            except FileNotFoundError:
                continue
    return removed


def _kept(log_path: Path) -> Optional[Path]:
    """The log path when there is a log to read there."""
    try:
        return log_path if log_path.stat().st_size > 0 else None
    except OSError:
        return None


def first_error(log_path: Path) -> str:
    """The first compiler/linker error line of a build log, shortened."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in lines:
        if re.search(r"\berror\b", line) and not line.startswith("make"):
            return line.strip()[:200]
    errs = [line for line in lines if line.startswith("make") and "Error" in line]
    return (errs[0] if errs else (lines[-1] if lines else "no output")).strip()[:200]
