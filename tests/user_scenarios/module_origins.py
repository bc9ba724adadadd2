# SPDX-License-Identifier: GPL-2.0-only
"""A scenario that reports where the Python running it found each module it has loaded: the evidence
tests/test_guest_python.py reads from a real guest run (the run path's modules from the archive in
memory, the rest from the host folders)."""

import sys

from uffdprobe.scenarios.api import Outcome, Scenario, ScenarioContext, Verdict


def run_module_origins(ctx: ScenarioContext) -> Outcome:
    modules = {}
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        loader = getattr(spec, "loader", None)
        modules[name] = {
            "archive": getattr(loader, "archive", None),
            "loader": type(loader).__name__,
            "file": getattr(module, "__file__", None),
        }
    return Outcome(Verdict.PASS, f"{len(modules)} modules listed", {"modules": modules, "path": sys.path})


SCENARIOS = [
    Scenario(
        "module-origins",
        "Where did this run's Python find its modules?",
        run_module_origins,
        needs=(),
        memory=("anon-4k",),
    ),
]
