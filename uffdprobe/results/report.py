"""Result output: a terminal table, KTAP (the kernel's own test format), JSON lines."""
import json
from typing import Iterable, List, TextIO

from uffdprobe.verdicts import Result, Verdict


def ktap(results: List[Result]) -> str:
    """KTAP v1: one test point per scenario and memory kind; SKIP as a directive, kernel problems not ok."""
    lines = ["KTAP version 1", f"1..{len(results)}"]
    for i, r in enumerate(results, 1):
        name = f"{r.scenario}.{r.memory}"
        reason = r.reason.replace("\n", " ")
        if r.verdict is Verdict.SKIP:
            lines.append(f"ok {i} {name} # SKIP {reason}")
        elif r.verdict is Verdict.PASS:
            lines.append(f"ok {i} {name}")
        else:
            lines.append(f"# {name}: {r.verdict.value}: {reason}")
            lines.append(f"not ok {i} {name}")
    return "\n".join(lines)


def table_line(r: Result) -> str:
    took = f"{r.duration_s:.2f}s" if r.duration_s else ""
    return f"{r.scenario:<24} {r.memory:<9} {r.verdict.value:<8} {took:>7}  {r.reason}"


def summary(results: Iterable[Result]) -> str:
    counts: dict = {}
    for r in results:
        counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))


def append_jsonl(stream: TextIO, r: Result) -> None:
    """One result a line, flushed at once: results survive a later hang, panic or kill."""
    stream.write(json.dumps(r.to_dict(), default=str) + "\n")
    stream.flush()


def read_jsonl(path) -> List[Result]:
    """Results from a JSON-lines file; a torn last line (the writer died mid-line) is ignored."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(Result.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
    return out
