"""The scenario child's side of the supervisor channel: hand over the uffd, announce blocking calls."""
import json
import os
import socket
from typing import Any, Dict, Optional

from uffdprobe.uffd import memory
from uffdprobe.uffd.userfaultfd import Userfaultfd


class ScenarioContext:
    """Passed to a scenario's run(): its memory kind, parameters, and the channel to the supervisor."""

    def __init__(self, sock: socket.socket, memory_kind: str, params: Dict[str, Any],
                 odirect_target: Optional[str] = None):
        self.sock = sock
        self.memory = memory_kind
        self.params = params
        self.odirect_target = odirect_target
        self.evidence: Dict[str, Any] = {}

    def _send(self, msg: dict, fds=()) -> None:
        data = json.dumps(msg).encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.send(data)

    def hand_over(self, uffd: Userfaultfd, start: int, length: int, rescue: str = "unprotect") -> None:
        """Give the supervisor a duplicate of `uffd` and the range to rescue ("unprotect"/"unregister")."""
        self._send({"type": "uffd", "start": start, "length": length, "rescue": rescue}, [uffd.fd])

    def watch(self, what: str, pid: Optional[int] = None, tid: Optional[int] = None,
              spin_s: Optional[float] = None, rescue: str = "") -> None:
        """A call that may block on a uffd fault starts now: the supervisor's hang timer runs.
        `spin_s` overrides how long the task may stay R or D outside handle_userfault before it is HANG;
        rescue="kill" rescues a hang by SIGKILL to the process (for a call no uffd answer can end)."""
        msg = {"type": "watch", "what": what, "pid": pid or os.getpid(),
               "tid": tid or (pid if pid else memory.gettid())}
        if spin_s is not None:
            msg["spin_s"] = spin_s
        if rescue:
            msg["rescue"] = rescue
        self._send(msg)

    def unwatch(self) -> None:
        """The watched call returned."""
        self._send({"type": "unwatch"})

    def progress(self, **counters: Any) -> None:
        """Work is moving: restart the hang timer; the counters become evidence."""
        self._send({"type": "progress", "counters": counters})

    def note(self, key: str, value: Any) -> None:
        """Evidence that should survive even if this child is killed later."""
        self.evidence[key] = value
        self._send({"type": "note", "key": key, "value": value})

    def finish(self, verdict: str, reason: str, evidence: Dict[str, Any]) -> None:
        self._send({"type": "result", "verdict": verdict, "reason": reason,
                    "evidence": {**self.evidence, **evidence}})
