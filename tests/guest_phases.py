# SPDX-License-Identifier: GPL-2.0-only
"""Run inside a guest by tests/bench_first_verdict.py: the steps of `uffdprobe run SCENARIO...` one by
one, each stamped with CLOCK_BOOTTIME (the clock of /proc/uptime and of guest init's "init reached"
line), written as JSON to $UFFDPROBE_RESULTS/phases.json. It calls the functions `uffdprobe run`
calls, in its order; it times them, it does not copy them.

    python tests/guest_phases.py [--memory KIND] SCENARIO...
"""

import contextlib
import json
import os
import sys
import time


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def exec_uptime() -> float:
    """When this process was exec'd, in seconds since boot (field 22 of /proc/self/stat)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    stamps = {"exec": exec_uptime(), "main": now()}
    from uffdprobe.cli.main import build_parser

    argv = ["run", *sys.argv[1:]]
    parser = build_parser(argv)
    stamps["imports"] = now()
    args = parser.parse_args(argv)
    from uffdprobe.run import host, plan, request as run_request

    request = run_request.build(vars(args))
    from uffdprobe.supervise import supervisor
    from uffdprobe.uffd import features, odirect

    stamps["parsed"] = now()
    kf = features.probe()
    stamps["feature_probe"] = now()
    verdicts = []
    needed = args.odirect_target or host._needs_odirect(request)  # as run_on_host decides
    with odirect.target(args.odirect_target) if needed else contextlib.nullcontext() as target:
        stamps["scratch_probe"] = now()
        items = plan.supervised(request, kf, target)
        stamps["planned"] = now()
        limits = supervisor.Limits(hang_s=args.hang_timeout, scenario_s=args.scenario_timeout)
        supervisor.run_many(
            items, kf.kernel, limits, target, lambda r: verdicts.append((now(), r.scenario, r.verdict.value))
        )
    stamps["done"] = now()
    out = {"stamps": stamps, "verdicts": verdicts, "odirect_target": target}
    with open(os.path.join(os.environ["UFFDPROBE_RESULTS"], "phases.json"), "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
