# SPDX-License-Identifier: GPL-2.0-only
"""One planner and one filler for every run (host, guest, matrix): the rows a run owes, in the order they
come (the --exec program's, the scenarios' per run and memory kind, then each selftest's run row), and a
verdict for every owed row a run never reported. The owed list is what KTAP announces and what a dead
guest's or a lost child's missing rows are filled from."""

import json
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from uffdprobe.exitcodes import UsageError
from uffdprobe.scenarios.memkinds import NO_MEMORY
from uffdprobe.scenarios.registry import Scenario, select, skip_reason
from uffdprobe.verdicts import Result, Verdict
from . import selftests
from .request import RunRequest

#: (row name, memory kind, 1-based run or None with a single run): one verdict a run owes.
Row = Tuple[str, str, Optional[int]]
#: The largest whole-number scenario parameter accepted.
MAX_WHOLE = 1 << 20


def chosen(request: RunRequest) -> List[Scenario]:
    """The scenarios the request names (every public one when it names none); none at all for an --exec
    program alone; an unknown name is a UsageError."""
    if request.workload.exec_only:
        return []
    try:
        return select(list(request.workload.scenarios))
    except KeyError as exc:
        raise UsageError(f"unknown scenario {exc.args[0]}; `uffdprobe list` shows them") from None


def parameters(request: RunRequest, scenarios: Sequence[Scenario]) -> Dict[str, object]:
    """--param KEY=VALUE (VALUE read as JSON, else a string), each KEY checked to be a parameter of a chosen
    scenario; a UsageError naming the fix otherwise."""
    out: Dict[str, object] = {}
    for pair in request.workload.param:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: write KEY=VALUE, e.g. --param data_pages=128")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    for pair in request.workload.param:
        key = pair.partition("=")[0]
        if not any(key in s.defaults for s in scenarios):
            raise UsageError(
                f"--param {pair}: no chosen scenario has a parameter {key}; `uffdprobe list --all` shows them"
            )
    return out


def _merged(s: Scenario, params: Mapping[str, object]) -> Dict[str, object]:
    """A scenario's defaults with the given parameters over them, whole numbers range-checked."""
    merged = {**s.defaults, **{k: v for k, v in params.items() if k in s.defaults}}
    for key, value in merged.items():
        default = s.defaults[key]
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and (not isinstance(value, int) or value <= 0 or value > MAX_WHOLE)
        ):
            raise UsageError(f"{s.name}: {key}={value!r} must be a whole number from 1 to {MAX_WHOLE}")
    return merged


def _runs(request: RunRequest) -> List[Optional[int]]:
    runs = request.workload.runs
    return [None] if runs <= 1 else list(range(1, runs + 1))


def _items(request: RunRequest) -> Iterator[Tuple[Optional[int], Scenario, str, Dict[str, object]]]:
    """(run, scenario, memory kind, its parameters) for every scenario row the request owes, in order;
    the parameters are checked (a UsageError) before the first is given."""
    scenarios = chosen(request)
    params = parameters(request, scenarios)
    merged = {s.name: _merged(s, params) for s in scenarios}
    memory = request.workload.memory
    for run in _runs(request):
        for s in scenarios:
            for m in s.memory:
                if not memory or m in memory:
                    yield run, s, m, merged[s.name]


def owed(request: RunRequest, kselftests: Optional[Sequence[str]] = None) -> List[Row]:
    """Every row the run owes, in the order it reports them: the --exec program's (one per run), the
    scenarios' (per run, scenario, memory kind), then each selftest's run row (its cases are only known
    once it ran). `kselftests` overrides the request's (a matrix kernel's recipe adds its own)."""
    rows: List[Row] = []
    if request.workload.exec is not None:
        rows += [(request.workload.program_row, NO_MEMORY, run) for run in _runs(request)]
    rows += [(s.name, m, run) for run, s, m, _ in _items(request)]
    wanted = request.workload.kselftest if kselftests is None else kselftests
    return rows + selftests.owed(list(wanted))


def supervised(request: RunRequest, kf, target: Optional[str]) -> list:
    """The scenario items the supervisor runs on this kernel, in owed() order: (scenario, memory, params,
    skip reason or None), params carrying the 1-based 'run' when there is more than one."""
    return [
        (s, m, merged if run is None else {**merged, "run": run}, skip_reason(s, m, kf, target))
        for run, s, m, merged in _items(request)
    ]


def key(r: Result) -> Row:
    """The owed row a Result answers."""
    return r.scenario, r.memory, r.params.get("run")


def missing(
    rows: Sequence[Row],
    results: Sequence[Result],
    verdict: Verdict,
    reason: str,
    evidence: Mapping[str, object],
    kernel: Mapping[str, object],
) -> List[Result]:
    """A Result with `verdict`, `reason` and `evidence` for every owed row no Result answers."""
    have = {key(r) for r in results}
    return [
        Result(name, mem, verdict, reason, dict(evidence), dict(kernel), {} if run is None else {"run": run}, None)
        for name, mem, run in rows
        if (name, mem, run) not in have
    ]
