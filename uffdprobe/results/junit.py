"""The matrix as JUnit XML: a testsuite per kernel, a testcase per scenario × memory kind."""
import xml.etree.ElementTree as ET
from typing import Dict

from . import evidence as evidence_view
from .matrix import Cell, KernelRun, Matrix

IDENTITY_KEYS = ("label", "recipe", "release", "version", "sha256", "path", "config_sha256", "key", "machine")


def to_xml(m: Matrix) -> str:
    """Failure for an unexpected cell (REGRESSION, FIXED, UNEXPECTED), skipped for SKIP, else passed."""
    root = ET.Element("testsuites", name="uffdprobe matrix")
    totals = dict(tests=0, failures=0, skipped=0, errors=0)
    for k in m.kernels:
        suite = _suite(m, k)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(m: Matrix, k: KernelRun) -> ET.Element:
    cells = [c for c in (m.cell(k, s, mem) for s, mem in m.rows) if c is not None]
    suite = ET.Element("testsuite", name=f"uffdprobe.matrix[{k.label}]", tests=str(len(cells)), errors="0",
                       failures=str(sum(c.unexpected for c in cells)),
                       skipped=str(sum(_skipped(c) for c in cells)),
                       time=f"{sum(r.duration_s or 0 for c in cells for r in c.results):.3f}")
    props = ET.SubElement(suite, "properties")
    for key, value in _identity(k).items():
        ET.SubElement(props, "property", name=f"kernel.{key}", value=value)
    for c in cells:
        suite.append(_case(c, k))
    return suite


def _identity(k: KernelRun) -> Dict[str, str]:
    out = {key: str(k.identity[key]) for key in IDENTITY_KEYS if k.identity.get(key)}
    for key in ("console_log", "log", "accel"):
        if k.boot.get(key):
            out[key] = str(k.boot[key])
    return out


def _skipped(c: Cell) -> bool:
    return not c.unexpected and all(r.verdict.value == "SKIP" for r in c.results)


def _case(c: Cell, k: KernelRun) -> ET.Element:
    case = ET.Element("testcase", classname=f"uffdprobe.matrix.{k.label}", name=f"{c.scenario}[{c.memory}]",
                      time=f"{sum(r.duration_s or 0 for r in c.results):.3f}")
    props = ET.SubElement(case, "properties")
    facts = {"verdict": c.label, "expected": c.expected or "", "mark": c.mark or "undeclared"}
    facts.update({f"kernel.{key}": value for key, value in _identity(k).items()
                  if key in ("label", "release", "sha256")})
    first = c.results[0]
    facts.update({f"evidence.{key}": value for key, value in evidence_view.summary(first).items()
                  if key not in ("verdict",)})
    for name, value in facts.items():
        ET.SubElement(props, "property", name=name, value=value)
    if c.unexpected:
        declared = f"expected {c.expected}" if c.expected else "nothing declared"
        fail = ET.SubElement(case, "failure", type=c.mark, message=f"{c.mark}: {declared}, got {c.label}")
        fail.text = "\n".join(f"run {r.params.get('run', 1)}: {r.verdict.value}: {r.reason}" for r in c.results)
    elif _skipped(c):
        ET.SubElement(case, "skipped", message=first.reason)
    out = ET.SubElement(case, "system-out")
    out.text = "\n".join(f"{key}: {value}" for key, value in evidence_view.summary(first).items())
    return case
