"""The scenario child's side of the supervisor channel: hand over the uffd, announce blocking calls."""
import contextlib
import json
import os
import socket
from typing import Any, Dict, Iterator, Optional

from uffdprobe.uffd import memory
from uffdprobe.uffd.userfaultfd import Userfaultfd
from .racy import Race


class ScenarioContext:
    """Passed to a scenario's run(): its memory kind, parameters, and the channel to the supervisor."""

    def __init__(self, sock: socket.socket, memory_kind: str, params: Dict[str, Any],
                 odirect_target: Optional[str] = None, race: Optional[Race] = None):
        self.sock = sock
        self.memory = memory_kind
        self.params = params
        self.odirect_target = odirect_target
        self.race = race   #: the table row's Race, for racy.repeat
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

    def watch(self, what: str, pid: Optional[int] = None, tid: Optional[int] = None) -> None:
        """A call that may block on a uffd fault starts now: the supervisor's hang timer runs."""
        self._send({"type": "watch", "what": what, "pid": pid or os.getpid(),
                    "tid": tid or (pid if pid else memory.gettid())})

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


@contextlib.contextmanager
def watched(ctx: ScenarioContext, what: str, pid: Optional[int] = None,
            tid: Optional[int] = None) -> Iterator[None]:
    """Around a call that may block on a uffd fault: the supervisor's hang timer runs while it does (a
    task blocked in handle_userfault longer than --hang-timeout is HANG, with evidence, then rescued
    through the uffd given to ctx.hand_over); unwatched however the call ends. Without it, a blocked call
    ends as ERROR at the scenario timeout."""
    ctx.watch(what, pid=pid, tid=tid)
    try:
        yield
    finally:
        ctx.unwatch()
