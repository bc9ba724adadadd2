"""A scenario that answers where the guest's Python found its modules: the evidence the in-memory image test
(tests/test_guest_image.py) reads."""
import json
import sys

from uffdprobe.scenarios.api import Outcome, Scenario, ScenarioContext, Verdict


def run_where_from(ctx: ScenarioContext) -> Outcome:
    files = {name: getattr(sys.modules.get(name), "__file__", None)
             for name in ("uffdprobe", "uffdprobe.supervise.supervisor", "json", "encodings", "_cffi_backend",
                          "uffdprobe.uffd._native")}
    files["this scenario file"] = __file__
    from uffdprobe.osutil import datafiles
    return Outcome(Verdict.PASS, "module files listed", {"files": files, "vm_images": str(datafiles.vm_images()),
                                                         "path": sys.path[:3], "json": json.__name__})


SCENARIOS = [
    Scenario("where-from", "Where did this run's Python find its modules?", run_where_from, needs=(),
             memory=("anon-4k",)),
]
