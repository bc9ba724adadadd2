# SPDX-License-Identifier: GPL-2.0-only
"""What a matrix-shaped command (`matrix`, `check`) writes: its Report (the JSON body and the summary it
prints), every requested output file plus KIND.json in the results folder, each whole or not at all, and
--ktap streamed a kernel at a time."""

import argparse
import errno
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, TextIO, Tuple, cast

import uffdprobe
from uffdprobe.osutil import outputs
from uffdprobe.results import html as html_report, junit, ktap, report
from uffdprobe.results.artifacts import relocated, relocated_run
from uffdprobe.results.matrix import Matrix


@dataclass(frozen=True)
class Report:
    """What a matrix-shaped command writes and prints; `matrix` and `check` differ only here. `body` is the
    JSON document's body, `show` prints the summary after the matrix ends and returns the exit status."""

    kind: str
    body: Callable[[Matrix], dict]
    show: Callable[[Matrix, TextIO, float], int]


def write(
    m: Matrix,
    args: argparse.Namespace,
    work: Path,
    output: Report,
    say: Callable[[str], None],
    interrupted: bool = False,
) -> Tuple[List[str], List[str], bool]:
    """Every requested output plus matrix.json in the work dir, each whole or not at all (write_atomic).

    An interrupted run's report never replaces a larger earlier file: it goes next to it as
    NAME.incomplete.EXT. Returns the paths written, one phrase per file that is not where asked, and
    whether a disk was full."""
    data = json.dumps(report.document(output.kind, output.body(m)), indent=1)
    if args.json == "-":
        sys.stdout.write(data + "\n")
        sys.stdout.flush()
    files = [(Path(args.json), data)] if args.json and args.json != "-" else []
    if args.junit:  # the reports name the results folder's files relative to themselves
        files.append((Path(args.junit), junit.to_xml(relocated(m, work, Path(args.junit)))))
    if args.html:
        files.append((Path(args.html), html_report.render(relocated(m, work, Path(args.html)))))
    if args.kcidb:
        from uffdprobe.results import kcidb

        files.append((Path(args.kcidb), json.dumps(kcidb.report(m, args.origin, work, args.kcidb_url), indent=1)))
    written, notes, full = [], [], False
    name = f"{output.kind}.json"
    try:  # never over another run's matrix.json (check.json) in the same folder (--results-dir)
        kept = outputs.write_new(work / name, data.encode())
        written.append(str(kept))
        if kept.name != name:
            say(f"{output.kind}: {work / name} is an earlier run's and stays; this run's is {kept}")
    except OSError as exc:
        notes.append(f"cannot write {work / name} ({exc.strerror})")
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    for path, text in files:
        body = text.encode()
        if interrupted and not outputs.is_stream(str(path)) and _larger(path, len(body)):
            notes.append(f"kept the earlier, larger {path}")
            path = path.with_name(f"{path.stem}.incomplete{path.suffix}")
        try:
            outputs.write(str(path), body)
        except OSError as exc:
            notes.append(f"cannot write {path} ({exc.strerror}), the earlier file (if any) is untouched")
            full = full or exc.errno in (errno.ENOSPC, errno.EDQUOT)
            continue
        written.append(str(path))
    return written, notes, full


def _larger(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size > size
    except OSError:
        return False


class KtapOutput:
    """--ktap: a kernel's subtree as soon as the kernel finishes, on stdout ('-'), a device or FIFO as it
    comes, or into a temporary file of this matrix's own renamed to FILE once every kernel is in (an
    interrupted matrix leaves FILE as it was)."""

    def __init__(self, where: str, kernels: int, owed: list, work: Path):
        self.where, self.owed, self.work = where, owed, work
        self.out = None if where == "-" else outputs.Growing(where)
        sink = sys.stdout if self.out is None else cast(TextIO, self.out)  # Growing: write() and flush() of str
        self.top = ktap.Writer(sink, kernels, [f"uffdprobe {uffdprobe.version()}: {' '.join(sys.argv)}"])

    def kernel(self, k) -> None:
        here = Path("-") if self.where == "-" else Path(self.where)  # stdout: relative to the current folder
        ktap.write_kernel(self.top, relocated_run(k, self.work, here), self.owed)

    def finish(self) -> None:
        if self.out is not None:
            self.out.finish()

    def discard(self) -> None:
        if self.out is not None:
            self.out.discard()
