# SPDX-License-Identifier: GPL-2.0-only
"""One `uffdprobe run --json` as a user types it, read back: what the defect tests' module fixtures boot."""

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from formats import valid_json

from uffdprobe.kbuild import recipes
from uffdprobe.results import expect
from uffdprobe.verdicts import Result

#: A guest run's bound in these tests: a cold build of the kernel may come first.
RUN_TIMEOUT_S = 1800


def run_scenarios(out: Path, scenarios: Sequence[str], kernel: Optional[str] = None) -> Dict[str, Any]:
    """`uffdprobe run SCENARIOS --json` on `kernel` (the running kernel when None), the JSON written under
    `out` and validated: {"status", "stderr", "results": [Result], "cells": {(scenario, memory): Result}}."""
    path = out / f"{kernel or 'host'}.json"
    where = ["--kernel", kernel] if kernel else []
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", *where, *scenarios, "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    results = [Result.from_dict(d) for d in valid_json(path, "results")["results"]] if path.exists() else []
    return {
        "status": proc.returncode,
        "stderr": proc.stderr,
        "results": results,
        "cells": {(r.scenario, r.memory): r for r in results},
    }


def assert_meets_its_recipe(run: Dict[str, Any], kernel: str) -> None:
    """The run exited 0 and every verdict is what the recipe of `kernel` declares (results.expect)."""
    assert run["status"] == 0, f"{kernel}: exit {run['status']}\n{run['stderr'][-3000:]}"
    assert not expect.check(recipes.load(kernel).expect, run["results"])
