# SPDX-License-Identifier: GPL-2.0-only
"""`run --kcidb FILE --origin NAME`: the run's verdicts as a one-kernel KCIDB report (results/kcidb.py),
its links into --results-dir (or the report's own folder), the recipe's build log and .config kept there."""

import json
import time
from pathlib import Path
from typing import List, Optional

from uffdprobe.osutil import outputs
from uffdprobe.verdicts import Result
from .request import RunRequest


def write(results: List[Result], request: RunRequest, boot: Optional[dict] = None) -> None:
    """Write --kcidb (whole or not at all) when asked; OSError names the file."""
    outputs_asked = request.outputs
    if not outputs_asked.kcidb or not outputs_asked.origin:  # the CLI refuses --kcidb without --origin
        return
    from uffdprobe.results import kcidb  # only when asked: every run (a guest's too) calls this
    from uffdprobe.results.matrix import KernelRun, Matrix
    from .kernels import HOST, build, check_kernels
    from .matrix import _keep_build_files

    folder = (
        Path(outputs_asked.results_dir) if outputs_asked.results_dir else Path(outputs_asked.kcidb).resolve().parent
    )
    target = check_kernels([request.machine.kernel or HOST])[0]  # a tuxmake folder's identity from its metadata.json
    if target.recipe:
        build(target, lambda text: None)  # from the cache: run --kernel built it already
    _keep_build_files(target, folder)
    identity = dict(results[0].kernel) if results else {}
    identity.update(target.identity)
    facts = dict(boot or {}, folder=str(folder))
    facts.setdefault("started_at", round(time.time() - sum(r.duration_s or 0 for r in results), 3))
    if (folder / "console.log").is_file():
        facts["console_log"] = str(folder / "console.log")
    run = KernelRun(target.label, results, identity, facts, dict(request.declared))
    data = kcidb.report(Matrix([run]), outputs_asked.origin, folder, outputs_asked.kcidb_url)
    outputs.write(
        outputs_asked.kcidb, (json.dumps(data, indent=1) + "\n").encode()
    )  # a node/FIFO in place, a file whole
