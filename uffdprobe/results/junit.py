# SPDX-License-Identifier: GPL-2.0-only
"""The matrix as JUnit XML, valid per junit-10.xsd (what Jenkins' xunit plugin, GitLab and pytest read).

A testsuite per kernel: named by its label, its identity and boot facts as suite properties, its time and
timestamp those of the whole kernel run (build lookup, boot and every scenario). A testcase per
scenario × memory kind: classname "KERNEL.SCENARIO" with the label's own dots made "_" (Jenkins splits
the classname at its last dot into package and class, so it shows kernel -> scenario -> case), the
evidence of every run in <system-out>. The schema allows properties on suites only, so per-case facts
(verdict, declaration, mark) are the first lines of system-out.
"""

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict

from uffdprobe.verdicts import Verdict
from . import evidence as evidence_view
from uffdprobe.scenarios.memkinds import NO_MEMORY
from uffdprobe.supervise.kselftest import is_selftest_row
from .expect import expected_failure
from .matrix import Cell, KernelRun, Matrix

IDENTITY_KEYS = (
    "label",
    "recipe",
    "summary",
    "release",
    "version",
    "sha256",
    "path",
    "config_sha256",
    "key",
    "machine",
)
_HARNESS = {Verdict.ERROR, Verdict.BUILD_FAIL}


def to_xml(m: Matrix) -> str:
    """Failure for an unexpected cell, error when the harness (not the kernel) gave no answer, skipped for
    SKIP and for a declared bad verdict (an expected failure), else passed."""
    root = ET.Element("testsuites", name="uffdprobe matrix")
    totals = dict(tests=0, failures=0, errors=0)
    seconds = 0.0
    for k in m.kernels:
        suite = _suite(m, k)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.attrib[key])
        seconds += float(suite.attrib["time"])
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def kernel_id(label: str) -> str:
    """A label as one classname part: a path's file name, with no dots ('model-5.8' -> 'model-5_8')."""
    name = Path(label).name if "/" in label else label
    return "".join("_" if c in "./ " else c for c in name) or "kernel"


def _suite(m: Matrix, k: KernelRun) -> ET.Element:
    cells = [c for c in (m.cell(k, s, mem) for s, mem in m.rows) if c is not None]
    outcomes = [_outcome(c) for c in cells]
    run_s = sum(r.duration_s or 0 for c in cells for r in c.results)
    seconds = float(k.boot.get("seconds") or 0) or run_s  # the whole kernel run, boot included
    suite = ET.Element(
        "testsuite",
        name=k.label,
        tests=str(len(cells)),
        failures=str(outcomes.count("failure")),
        errors=str(outcomes.count("error")),
        skipped=str(outcomes.count("skipped")),
        time=f"{seconds:.3f}",
    )
    started = k.boot.get("started_at")
    if isinstance(started, (int, float)):
        suite.set("timestamp", datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"))
    props = ET.SubElement(suite, "properties")
    for key, value in suite_properties(k).items():
        ET.SubElement(props, "property", name=key, value=value)
    for c, outcome in zip(cells, outcomes):
        suite.append(_case(c, k, outcome))
    return suite


def suite_properties(k: KernelRun) -> Dict[str, str]:
    """Kernel identity (kernel.*) and boot facts (boot.*: logs, acceleration, timings)."""
    out = {f"kernel.{key}": str(k.identity[key]) for key in IDENTITY_KEYS if k.identity.get(key)}
    for key in ("console_log", "log", "accel", "seconds", "exit_status"):
        if k.boot.get(key) not in (None, ""):
            out[f"boot.{key}"] = str(k.boot[key])
    timings = k.boot.get("timings")
    if isinstance(timings, dict):
        out.update({f"boot.timings.{key}": str(value) for key, value in timings.items()})
    return out


def _outcome(c: Cell) -> str:
    """'failure', 'error', 'skipped' or 'passed'."""
    if c.unexpected:
        return "error" if all(r.verdict in _HARNESS for r in c.results) else "failure"
    verdicts = [r.verdict for r in c.results]
    if all(r.verdict is Verdict.SKIP for r in c.results) or expected_failure(c.expected, c.mark, verdicts):
        return "skipped"
    return "passed"


def _case(c: Cell, k: KernelRun, outcome: str) -> ET.Element:
    if c.memory == NO_MEMORY and is_selftest_row(c.scenario):  # class is its program, the case name stays whole
        classname, name = f"{kernel_id(k.label)}.{c.scenario.split(': ', 1)[0]}", c.scenario
    else:
        classname, name = f"{kernel_id(k.label)}.{c.scenario}", f"{c.scenario}[{c.memory}]"
    case = ET.Element(
        "testcase", classname=classname, name=name, time=f"{sum(r.duration_s or 0 for r in c.results):.3f}"
    )
    declared = f"expected {c.expected}" if c.expected else "nothing declared"
    first = c.results[0]
    if outcome in ("failure", "error"):
        fail = ET.SubElement(case, outcome, type=str(c.mark), message=f"{c.mark}: {declared}, got {c.label}")
        fail.text = "\n".join(f"run {r.params.get('run', 1)}: {r.verdict.value}: {r.reason}" for r in c.results)
    elif outcome == "skipped" and expected_failure(c.expected, c.mark, [r.verdict for r in c.results]):
        ET.SubElement(case, "skipped", type="expected-failure", message=f"expected failure: {declared}, got {c.label}")
    elif outcome == "skipped":
        ET.SubElement(case, "skipped", message=first.reason)
    out = ET.SubElement(case, "system-out")
    out.text = case_text(c, k)
    return case


def case_text(c: Cell, k: KernelRun) -> str:
    """The case's facts and every run's evidence, one 'name: value' a line."""
    lines = [
        f"kernel: {k.label}",
        f"verdict: {c.label}",
        f"expected: {c.expected or '-'}",
        f"mark: {str(c.mark) or 'undeclared'}",
    ]
    lines += [f"kernel.{key}: {k.identity[key]}" for key in ("release", "sha256") if k.identity.get(key)]
    for r in c.results:
        lines.append(f"-- run {r.params.get('run', 1)}")
        lines += [f"{key}: {value}" for key, value in evidence_view.summary(r).items()]
    return "\n".join(lines)
