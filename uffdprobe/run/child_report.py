# SPDX-License-Identifier: GPL-2.0-only
"""The structured report a `uffdprobe run` leaves in its results folder (run.json): where its boot's files
are, how the boot ended, its timings, its exit status and the last error it said. A matrix and the Dask
engine read this file; the lines the run prints are for people only and nothing parses them."""

import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional

from uffdprobe.osutil.files import write_atomic

FILE = "run.json"
FORMAT = "uffdprobe.run"


@dataclass
class ChildReport:
    """What one run says about itself; the boot fields stay empty on the running kernel."""

    run_dir: Optional[str] = None  #: the boot's run folder (console.log, result.json, channel/)
    console_log: Optional[str] = None
    outcome: Optional[str] = None  #: the boot's outcome: OK, PANIC, BOOT_FAIL, VM_TIMEOUT, ...
    reason: str = ""  #: why the boot ended so
    timings: Dict[str, object] = field(default_factory=dict)
    accel: Optional[str] = None
    panic_lines: List[str] = field(default_factory=list)
    kernel_identity: Dict[str, object] = field(default_factory=dict)
    transport: Optional[str] = None
    exit_status: Optional[int] = None  #: the run's own exit status, once it has one
    error: str = ""  #: the last error the run said (one line, without 'uffdprobe: ')

    def booted(self, result) -> None:
        """Take in how a boot (vm.boot.BootResult) ended."""
        self.run_dir, self.console_log = str(result.run_dir), str(result.console_log)
        self.outcome, self.reason, self.timings = result.outcome, result.reason, dict(result.timings)
        self.accel, self.panic_lines = result.accel, list(result.panic_lines)
        self.kernel_identity, self.transport = dict(result.kernel_identity), result.transport

    def facts(self) -> Dict[str, object]:
        """The fields that are set, as a dict (a matrix's KernelRun.boot starts from these)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "", [], {})}


class Reporter:
    """The report of the run in progress, written whole to RESULTS_DIR/run.json at every change when the
    run has a results folder (a child killed half-way still leaves what it knew); say() prints an error
    line for people and keeps it as the report's last error."""

    def __init__(self, results_dir: Optional[str]):
        self.path = Path(results_dir) / FILE if results_dir else None
        self.report = ChildReport()

    def update(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.report, key, value)
        self.save()

    def booted(self, result) -> None:
        self.report.booted(result)
        self.save()

    def say(self, text: str) -> None:
        """'uffdprobe: TEXT' on stderr, and TEXT as the report's last error."""
        print(f"uffdprobe: {text}", file=sys.stderr, flush=True)
        self.update(error=text)

    def save(self) -> None:
        if self.path is None or not self.path.parent.is_dir():  # never made for a refused run
            return
        data = {"format": FORMAT, **asdict(self.report)}
        try:
            write_atomic(self.path, (json.dumps(data, indent=1) + "\n").encode())
        except OSError:  # a results folder that went away is said once, by the verdict stream
            pass


def read(folder: Path) -> ChildReport:
    """FOLDER/run.json, or an empty report when the run left none (it never started, or died before)."""
    try:
        data = json.loads((Path(folder) / FILE).read_text())
    except (OSError, ValueError):
        return ChildReport()
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return ChildReport()
    known = {f.name for f in fields(ChildReport)}
    return ChildReport(**{k: v for k, v in data.items() if k in known})
