"""Running make for a kernel build: bounded, logged, with a one-line progress display on stderr."""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .kbuild_errors import BuildFailed, SetupError

BUILD_TIMEOUT = 3600.0  # seconds; a cold tinyconfig-based build takes about 6-9 min on 2 cores
_STEP = re.compile(r"^\s+(CC|AS|LD|AR|OBJCOPY|GEN|HOSTCC|HOSTLD|UPD|MODPOST|ZOFFSET|VOFFSET|MKPIGGY)"
                   r"(?: \[\w+\])?\s+(\S+)")


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
    """One updating stderr line on a terminal (a line every 30 s otherwise): elapsed, CC count, last step."""

    def __init__(self, label: str, enabled: bool = True):
        self.label, self.enabled = label, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.compiled = 0
        self.last = ""
        self.shown = 0.0

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
        if self.enabled and now - self.shown >= (0.5 if self.tty else 30.0):
            self.shown = now
            text = f"kbuild [{self.label}]: {self._elapsed()}  {self.compiled} compiled  {self.last}"
            if self.tty:
                sys.stderr.write("\r\033[K" + text[:150])
                sys.stderr.flush()
            else:
                print(text, file=sys.stderr, flush=True)

    def finish(self, text: str) -> None:
        self.note(f"{text} in {self._elapsed()} ({self.compiled} files compiled)")

    def _elapsed(self) -> str:
        secs = int(time.monotonic() - self.start)
        return f"{secs // 60:02d}:{secs % 60:02d}"

    def _clear(self) -> None:
        if self.tty and self.shown:
            sys.stderr.write("\r\033[K")


def make_env(work: Path) -> dict:
    """Environment for make: ccache rewrites paths under the workspace, so any workspace hits its cache."""
    env = dict(os.environ)
    env.setdefault("CCACHE_BASEDIR", str(work))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    return env


def run_make(argv: list, log_path: Path, progress: Progress, timeout: float = BUILD_TIMEOUT,
             env: dict = None) -> None:
    """Run make, appending its output to `log_path`; BuildFailed (with the first error) on failure or timeout."""
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", start_new_session=True, env=env)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            _killpg(proc)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for line in proc.stdout:
                log.write(line)
                progress.step(line)
            status = proc.wait(timeout=60)
        except BaseException:
            _killpg(proc)
            proc.wait(timeout=60)
            raise
        finally:
            timer.cancel()
            proc.stdout.close()
    if timed_out.is_set():
        raise BuildFailed(f"build timed out after {timeout:.0f} s; build log: {log_path}", log=log_path)
    if status != 0:
        raise BuildFailed(f"build failed (make exit {status}): {first_error(log_path)}; build log: {log_path}",
                          log=log_path)


def _killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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
