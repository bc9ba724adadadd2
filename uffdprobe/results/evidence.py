# SPDX-License-Identifier: GPL-2.0-only
"""Short, flat views of a Result's evidence for reports: blocked task state, wchan, stack, rescue."""

from typing import Any, Dict, List

from uffdprobe.verdicts import Result

STACK_FRAMES = 8
SPLAT_LINES = 12


def blocked_tasks(r: Result) -> List[Dict[str, Any]]:
    """The tasks a HANG found in handle_userfault, or a STUCK found stuck elsewhere (empty for other verdicts)."""
    ev = r.evidence if isinstance(r.evidence, dict) else {}
    hang = ev.get("hang") or ev.get("stuck")
    return list(hang.get("blocked_tasks") or []) if isinstance(hang, dict) else []


def summary(r: Result) -> Dict[str, str]:
    """Flat name → one-line text: verdict, reason, run, duration, for a HANG state/wchan/stack/rescue, for a
    kernel splat its report line and first lines (and a kernel log that could not be read, saying why)."""
    out = {"verdict": r.verdict.value, "reason": r.reason}
    if "run" in r.params:
        out["run"] = str(r.params["run"])
    if r.duration_s is not None:
        out["duration_s"] = f"{r.duration_s:.3f}"
    tasks = blocked_tasks(r)
    if tasks:
        first = tasks[0]
        out["state"] = str(first.get("state", "?"))
        out["wchan"] = str(first.get("wchan", "?"))
        stack = first.get("stack")
        if isinstance(stack, list):
            out["stack"] = " <- ".join(_frame(f) for f in stack[:STACK_FRAMES])
        out["blocked_tasks"] = str(len(tasks))
    hang = r.evidence.get("hang") if isinstance(r.evidence, dict) else None
    if isinstance(hang, dict) and hang.get("pending_uffd_messages"):
        out["pending_uffd_messages"] = "; ".join(map(message_text, hang["pending_uffd_messages"]))
    race = r.evidence.get("race") if isinstance(r.evidence, dict) else None
    if isinstance(race, dict) and race.get("tries_made"):
        out["race"] = race_text(race)
    splat = r.evidence.get("splat") if isinstance(r.evidence, dict) else None
    if isinstance(splat, dict):  # a kernel splat while it ran (supervise.splat): its report line and excerpt
        out["splat"] = str(splat.get("first", ""))
        lines = [str(x).split("] ", 1)[-1] for x in splat.get("lines") or []]
        if lines:
            out["splat_lines"] = " | ".join(lines[:SPLAT_LINES])
    log = r.evidence.get("kernel_log") if isinstance(r.evidence, dict) else None
    if isinstance(log, dict) and log.get("read") is False:
        out["kernel_log"] = str(log.get("why", "not read"))
    for key in ("fault_address", "rescue", "console_log", "log"):
        if isinstance(r.evidence, dict) and r.evidence.get(key):
            out[key] = str(r.evidence[key])
    return out


def race_text(race: Dict[str, Any]) -> str:
    """A racy trigger's evidence on one line: 'hit on try 19 of 200' or 'no hit in 200 of 200 tries,
    miss probability 0.011 at p_hit 0.015'."""
    if race.get("hit_on_try"):
        return f"hit on try {race['hit_on_try']} of {race.get('tries')}"
    return (
        f"no hit in {race['tries_made']} of {race.get('tries')} tries (stopped by {race.get('stopped_by')}), "
        f"miss probability {race.get('miss_probability', 0):.2g} at p_hit {race.get('p_hit')}"
    )


def _frame(line: str) -> str:
    """'[<0>] handle_userfault+0x4d6/0x53d' -> 'handle_userfault'."""
    name = line.split("] ", 1)[-1]
    return name.split("+", 1)[0].strip()


def message_text(msg: object) -> str:
    """A uffd message's data ({"event": "pagefault", "address": "0x..", "flags": [...], ...}) on one line:
    'pagefault address=0x7f.. flags=WRITE|WP ptid=0'."""
    if not isinstance(msg, dict):
        return str(msg)
    rest = " ".join(f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in msg.items() if k != "event")
    return f"{msg.get('event', '?')} {rest}".strip()
