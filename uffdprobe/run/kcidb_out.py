"""`run --kcidb FILE --origin NAME`: the run's verdicts as a one-kernel KCIDB report (results/kcidb.py),
its links into --results-dir (or the report's own folder), the recipe's build log and .config kept there."""
import argparse
import json
import time
from pathlib import Path
from typing import List, Optional

from uffdprobe.osutil import outputs
from uffdprobe.results import kcidb
from uffdprobe.results.matrix import KernelRun, Matrix
from uffdprobe.verdicts import Result


def write(results: List[Result], args: argparse.Namespace, boot: Optional[dict] = None) -> None:
    """Write args.kcidb (whole or not at all) when asked; OSError names the file."""
    if not getattr(args, "kcidb", None):
        return
    from .kernels import HOST, build, check_kernels
    from .matrix import _keep_build_files
    folder = Path(args.results_dir) if getattr(args, "results_dir", None) else Path(args.kcidb).resolve().parent
    target = check_kernels([args.kernel or HOST])[0]  # a tuxmake folder's identity from its metadata.json
    if target.recipe:
        build(target, lambda text: None)  # from the cache: run --kernel built it already
    _keep_build_files(target, folder)
    identity = dict(results[0].kernel) if results else {}
    identity.update(target.identity)
    facts = dict(boot or {}, folder=str(folder))
    facts.setdefault("started_at", round(time.time() - sum(r.duration_s or 0 for r in results), 3))
    if (folder / "console.log").is_file():
        facts["console_log"] = str(folder / "console.log")
    run = KernelRun(target.label, results, identity, facts, dict(getattr(args, "expectations", None) or {}))
    data = kcidb.report(Matrix([run]), args.origin, folder, getattr(args, "kcidb_url", None))
    outputs.write(args.kcidb, (json.dumps(data, indent=1) + "\n").encode())  # a node/FIFO in place, a file whole
