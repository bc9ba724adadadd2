# SPDX-License-Identifier: GPL-2.0-only
"""The local engine of a matrix (run/engine.py's Engine): each kernel's `uffdprobe run` child a process
group of this machine, its lines relayed with the kernel's label, stopped and reaped on request."""

import os
import subprocess
import threading
from pathlib import Path
from typing import Callable, Dict, Optional

from uffdprobe.osutil import children
from .engine import TERM_GRACE_S, child_argv, child_limit
from .kernels import Target
from .request import RunRequest


class LocalEngine:
    """Children on this machine, as many at once as the matrix's threads ask for."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.live: Dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run_child(self, target: Target, request: RunRequest, out: Path, log: Path) -> Optional[int]:
        """Run the child to its end (bounded by child_limit); its exit status, or None when it had to be
        stopped or killed."""
        with open(log, "w") as sink:
            with self.lock:  # stop_all() sees every child started, or none starts after it
                if self.stopping.is_set():
                    return None
                proc = subprocess.Popen(
                    child_argv(target, request, out),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", children.DIE_WITH_PARENT: str(os.getpid())},
                )
                self.live[target.label] = proc
            relay = threading.Thread(target=self._relay, args=(proc, sink, target.label), daemon=True)
            relay.start()
            try:
                status = proc.wait(timeout=child_limit(request))
            except subprocess.TimeoutExpired:
                children.stop(proc, grace=TERM_GRACE_S)
                status = None
            finally:
                relay.join(5)
                with self.lock:
                    self.live.pop(target.label, None)
        return status

    def _relay(self, proc: subprocess.Popen, sink, label: str) -> None:
        assert proc.stdout is not None  # started with stdout=PIPE
        for line in proc.stdout:
            sink.write(line)
            sink.flush()
            self.say(f"  {label} | {line.rstrip()}")

    def stop_all(self) -> None:
        """Ask every live child to stop (it kills its QEMU), then kill what is left; no new child starts.

        The children are stopped side by side, so the whole stop takes one grace period, not one each."""
        with self.lock:
            self.stopping.set()
            procs = list(self.live.values())
        stoppers = [threading.Thread(target=children.stop, args=(p, TERM_GRACE_S), daemon=True) for p in procs]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(TERM_GRACE_S + 30)
