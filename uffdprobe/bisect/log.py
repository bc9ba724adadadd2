# SPDX-License-Identifier: GPL-2.0-only
"""The bisect log: one JSON object per line (bisect.jsonl) and the same events as text (bisect.txt)."""

import json
import time
from pathlib import Path

JSONL = "bisect.jsonl"
TEXT = "bisect.txt"


class BisectLog:
    """Appends events to <dir>/bisect.jsonl and a readable line for each to <dir>/bisect.txt."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.text = self.dir / JSONL, self.dir / TEXT

    def event(self, kind: str, **data) -> dict:
        """Append one event (kind plus fields) to both files; returns the record."""
        record = {"event": kind, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        with open(self.text, "a") as f:
            f.write(describe(record) + "\n")
        return record

    def events(self, kind: str = None) -> list:
        """Every event recorded so far (of one kind when given); a torn last line is ignored."""
        return read(self.jsonl, kind)


def read(path, kind: str = None) -> list:
    """Events of a bisect.jsonl file, oldest first."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if kind is None or record.get("event") == kind:
            out.append(record)
    return out


def describe(r: dict) -> str:
    """One line of text for an event."""
    kind = r.get("event")
    if kind == "step":
        verdicts = " ".join(run.get("summary", "?") for run in r.get("runs", [])) or "-"
        build = (
            f"build {r['build_s']:.1f} s ({r.get('compiled', 0)} compiled)"
            if r.get("build_s") is not None
            else "build -"
        )
        boot = f"boot+run {r['boot_s']:.1f} s" if r.get("boot_s") else "boot -"
        why = f"  [{r['reason']}]" if r.get("reason") else ""
        return (
            f"{r.get('role', 'step'):<10} {r['commit'][:12]}  {r['decision'].upper():<4}  {verdicts}  "
            f"{build}  {boot}  step {r.get('step_s', 0):.1f} s  {r.get('subject', '')}{why}"
        )
    if kind == "start":
        return (
            f"bisect {r.get('scenario')} {'to the fix ' if r.get('find_fix') else ''}in {r.get('tree')}: "
            f"good {r.get('good', '')[:12]}, "
            f"bad {r.get('bad', '')[:12]}, {r.get('runs')} run(s) per step, bad if {r.get('bad_if')}"
        )
    if kind == "result":
        term = r.get("term", "bad")
        if r.get(f"first_{term}"):
            first = r[f"first_{term}"]
            return f"first {term} commit: {first['commit']} {first.get('subject', '')}  ({r.get('total_s', 0):.1f} s)"
        shown = ", ".join(f"{c['commit'][:12]} {c.get('subject', '')}" for c in r.get("candidates", []))
        return f"skips leave {len(r.get('candidates', []))} candidates: {shown}"
    return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("event", "time"))
