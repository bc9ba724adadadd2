# SPDX-License-Identifier: GPL-2.0-only
"""The seam between a matrix and where its kernels' runs happen: the Engine protocol (this machine:
engine_local.py; Dask workers: engine_dask.py), and the contract of one kernel's child every engine keeps:
its request and command line, its own fresh results folder, its time bound, CellLost when an engine
loses it. The child's results come back in that folder (results.json, verdicts.jsonl, run.json), read by
run/matrix.py whichever engine ran it."""

import json
import sys
from pathlib import Path
from typing import List, Optional, Protocol

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil.files import write_atomic
from . import selftests
from .kernel_arg import safe
from .kernels import Target, owner
from .request import Outputs, RunRequest

#: After SIGTERM a child gets this long to kill its QEMU and write its results before SIGKILL.
TERM_GRACE_S = 20.0
#: A child's bound beyond its request's --vm-timeout: building nothing, starting, writing its files.
CHILD_MARGIN_S = 120.0


class CellLost(Exception):
    """An engine lost a kernel's run (a cluster worker died, twice): the reason every owed verdict gets."""


class Engine(Protocol):
    """Runs kernels' `uffdprobe run` children; a matrix calls run_child from several threads at once."""

    def run_child(self, target: Target, request: RunRequest, out: Path, log: Path) -> Optional[int]:
        """Run `target`'s child for `request` (child_request) to its end, within child_limit(request),
        its results in `out` and its output lines in `log`; its exit status, None when it had to be
        stopped or killed. Raises OSError when it cannot start, CellLost when the engine lost it."""

    def stop_all(self) -> None:
        """Interrupted: stop every child running (each kills its QEMU and writes what it has), and let no
        new one start; returns once they are stopped, within a bounded grace period."""


def kselftests(request: RunRequest, target: Optional[Target]) -> List[str]:
    """The selftests a kernel runs: the matrix's --kselftest, then its recipe's kselftest list."""
    return selftests.chosen(list(request.workload.kselftest) + list(target.kselftest if target else []))


def child_request(target: Target, request: RunRequest, out: Path) -> RunRequest:
    """The `uffdprobe run` one kernel of the matrix is given: its kernel, its selftests, what is declared
    for it (the child judges, and says, what the matrix will), its results (and run.json) under `out`."""
    return request.replace(
        workload={"kselftest": tuple(kselftests(request, target))},
        machine={"kernel": target.path},
        outputs=Outputs(json=str(out / "results.json"), results_dir=str(out), verbosity=request.outputs.verbosity),
        expect=tuple(f"{key}={verdict}" for key, verdict in sorted(target.expect.items())),
    )


def child_argv(target: Target, request: RunRequest, out: Path) -> List[str]:
    """The `uffdprobe run` command line for one kernel, writing its results under `out`."""
    return [sys.executable, "-m", "uffdprobe", "run", *child_request(target, request, out).to_argv()]


def child_limit(request: RunRequest) -> float:
    """How long one kernel's child may take before it is killed."""
    return request.limits.vm_timeout + CHILD_MARGIN_S


def fresh_folder(work: Path, target: Target) -> Path:
    """WORK/LABEL-HASH, or LABEL-HASH.2, .3, ... when an earlier run left one: never reused, never shared
    by two kernels; kernel.json in it says whose it is."""
    base = f"{safe(target.label)}-{target.key()}"
    work.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10000):
        out = work / (base if n == 1 else f"{base}.{n}")
        try:
            out.mkdir()
        except FileExistsError:
            continue
        write_atomic(out / "kernel.json", json.dumps(owner(target), indent=1).encode())
        return out
    raise UsageError(f"{work}: 9999 results folders for {base} already; give another --results-dir")
