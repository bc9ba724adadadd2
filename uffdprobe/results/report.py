# SPDX-License-Identifier: GPL-2.0-only
"""Result output: a terminal table, JSON lines, and the JSON documents (run --json, matrix --json) with
their schema version, tool version and command line. KTAP lives in ktap.py."""

import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple, Union

import uffdprobe
from uffdprobe.verdicts import Result


def table_line(r: Result) -> str:
    took = f"{r.duration_s:.2f}s" if r.duration_s else ""
    return f"{r.scenario:<24} {r.memory:<9} {r.verdict.value:<8} {took:>7}  {r.reason}"


class Numbered:
    """Table lines counted against the plan: '[3/12] ' before the line of each row the run owes, in the order
    they land; a line it does not owe (a selftest's case, the kernel-log row) is indented to match."""

    def __init__(self, owed: Sequence[Tuple[str, str, Optional[int]]]):
        self._left = set(owed)
        self._total = len(owed)
        self._done = 0

    def line(self, r: Result) -> str:
        """The table line of `r`, numbered if it is the first answer to a row the plan owes."""
        key = (r.scenario, r.memory, r.params.get("run"))
        width = len(f"[{self._total}/{self._total}] ")
        if key not in self._left:
            return " " * width + table_line(r)
        self._left.discard(key)
        self._done += 1
        return f"[{self._done}/{self._total}] ".ljust(width) + table_line(r)


def summary(results: Iterable[Result]) -> str:
    counts: Dict[str, int] = {}
    for r in results:
        counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))


def append_jsonl(stream: TextIO, r: Result) -> None:
    """One result a line, flushed at once: results survive a later hang, panic or kill."""
    stream.write(json.dumps(r.to_dict()) + "\n")
    stream.flush()


def read_jsonl(path: Union[str, Path]) -> List[Result]:
    """Results from a JSON-lines file; a torn last line (the writer died mid-line) is ignored."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(Result.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
    return out


#: Bumped when a field changes meaning or goes away (adding one is compatible); the JSON Schemas in
#: results/schemas/ describe this version.
SCHEMA_VERSION = 1
SCHEMAS = Path(__file__).with_name("schemas")


def document(kind: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """A JSON output file: which format (`kind`: "results" or "matrix"), its schema version, the tool
    version (uffdprobe.version(), as --version says it) and the command line that wrote it, then `body`."""
    return {
        "format": f"uffdprobe.{kind}",
        "schema_version": SCHEMA_VERSION,
        "uffdprobe_version": uffdprobe.version(),
        "argv": list(sys.argv),
        **body,
    }


def results_document(results: List[Result]) -> Dict[str, Any]:
    """What `uffdprobe run --json` writes."""
    return document("results", {"results": [r.to_dict() for r in results]})


def read_results(path: Union[str, Path]) -> List[Result]:
    """The Results of a `run --json` file (raises OSError, ValueError, KeyError, TypeError if unreadable)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != "uffdprobe.results":
        raise ValueError(f"{path}: not a uffdprobe results file")
    return [Result.from_dict(d) for d in data["results"]]
