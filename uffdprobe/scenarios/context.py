# SPDX-License-Identifier: GPL-2.0-only
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

    def __init__(
        self,
        sock: socket.socket,
        memory_kind: str,
        params: Dict[str, Any],
        odirect_target: Optional[str] = None,
        race: Optional[Race] = None,
    ):
        self.sock = sock
        self.memory = memory_kind
        self.params = params
        self.odirect_target = odirect_target
        self.race = race  #: the table row's Race, for racy.repeat
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

    def watch(
        self,
        what: str,
        pid: Optional[int] = None,
        tid: Optional[int] = None,
        spin_s: Optional[float] = None,
        rescue: str = "",
    ) -> None:
        """A call that may block on a uffd fault starts now: the supervisor's hang timer runs.
        `spin_s` overrides how long the task may stay R or D outside handle_userfault before it is HANG;
        rescue="kill" rescues a hang by SIGKILL to the process (for a call no uffd answer can end)."""
        msg = {
            "type": "watch",
            "what": what,
            "pid": pid or os.getpid(),
            "tid": tid or (pid if pid else memory.gettid()),
        }
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
        limit = min(RESULT_LIMIT, self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - (16 << 10))
        if len(reason) > REASON_LIMIT:
            reason = reason[:REASON_LIMIT] + f" [... {len(reason) - REASON_LIMIT} characters cut]"
        self._send(
            {
                "type": "result",
                "verdict": verdict,
                "reason": reason,
                "evidence": bounded_evidence({**self.evidence, **evidence}, limit - len(reason) - 1024),
            }
        )


#: The largest result a scenario child sends whole: one SOCK_SEQPACKET message must fit the socket's
#: send buffer (the smaller bound wins), and the supervisor reads at most 1 MiB of it.
RESULT_LIMIT = 192 << 10
REASON_LIMIT = 4096
#: Characters of a cut entry's JSON kept in the note that replaces it.
CUT_HEAD = 2048


def bounded_evidence(evidence: Dict[str, Any], limit: int) -> Dict[str, Any]:
    """`evidence` as it is when its JSON fits `limit` bytes; else its largest entries, largest first, each
    replaced by a note (its size and the head of its JSON) until it fits, and `evidence_cut` saying so.
    Oversize evidence is cut, never an ERROR: the verdict stands."""
    texts = {key: json.dumps(value) for key, value in evidence.items()}
    whole = sum(len(t) + len(key) + 6 for key, t in texts.items())
    if whole <= limit:
        return evidence
    out, cut = dict(evidence), []
    for key in sorted(texts, key=lambda k: len(texts[k]), reverse=True):
        if len(json.dumps(out)) <= limit - 512:
            break
        out[key] = {"cut_bytes": len(texts[key]), "head": texts[key][:CUT_HEAD]}
        cut.append(key)
    out["evidence_cut"] = (
        f"the evidence was {whole} bytes of JSON, more than the {limit} the channel carries "
        f"whole: {', '.join(cut)} cut (each keeps its size and its first {CUT_HEAD} characters)"
    )
    return out


@contextlib.contextmanager
def watched(
    ctx: ScenarioContext,
    what: str,
    pid: Optional[int] = None,
    tid: Optional[int] = None,
    spin_s: Optional[float] = None,
    rescue: str = "",
) -> Iterator[None]:
    """Around a call that may block on a uffd fault: the supervisor's hang timer runs while it does (a
    task blocked in handle_userfault longer than --hang-timeout is HANG, with evidence, then rescued
    through the uffd given to ctx.hand_over); unwatched however the call ends. Without it, a blocked call
    ends as ERROR at the scenario timeout. `spin_s` and `rescue` as for ScenarioContext.watch."""
    ctx.watch(what, pid=pid, tid=tid, spin_s=spin_s, rescue=rescue)
    try:
        yield
    finally:
        ctx.unwatch()
