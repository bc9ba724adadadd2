# SPDX-License-Identifier: GPL-2.0-only
"""What the mm selftests print, read into cases: kselftest's TAP/KTAP (cow, gup_longterm) and
uffd-unit-tests' own "Testing NAME... done" lines (6.12's uffd-unit-tests prints no TAP).

A kselftest case is named by the "# [RUN] ..." line before its result ("vmsplice() + unmap in child ...
with base page"): the result line's own text ("No leak from parent into child") repeats across cases.
"""

import re
from dataclasses import dataclass, field
from typing import List, Optional

PASS, FAIL, SKIP, ERROR = "PASS", "FAIL", "SKIP", "ERROR"

_RUN = re.compile(r"^# \[RUN\] (.*\S)\s*$")
_RESULT = re.compile(r"^(ok|not ok) (\d+)\b ?(.*)$")
_PLAN = re.compile(r"^1\.\.(\d+)\s*$")
_TOTALS = re.compile(r"^# Totals: (.*)$")
_UFFD = re.compile(r"^Testing (.+?)\.\.\. (.*)$")
_UFFD_SUMMARY = re.compile(r"^Userfaults unit tests: (.*)$")
#: Case lines kept as the case's own evidence (its [RUN] line, diagnostics, the result line).
KEEP_LINES = 12


@dataclass
class Case:
    """One test case as the program reported it; `name` is unique within the program's output."""

    number: int
    name: str
    verdict: str
    reason: str
    lines: List[str] = field(default_factory=list)


@dataclass
class Output:
    """A program's whole report: its cases, the plan it announced (TAP only), its own totals line, and the
    case it had started when the output ended (a crash or a kill), if any."""

    cases: List[Case]
    plan: Optional[int] = None
    totals: str = ""
    unfinished: Optional[str] = None
    unfinished_lines: List[str] = field(default_factory=list)


def _unique(name: str, seen: set, number: int) -> str:
    name = " ".join(name.split()) or f"test {number}"
    if name in seen:
        name = f"{name} (No. {number})"
    seen.add(name)
    return name


def parse_tap(text: str) -> Output:
    """kselftest TAP 13 / KTAP 1 as cow and gup_longterm print it (flat, one level)."""
    out = Output([])
    seen: set = set()
    running: Optional[str] = None
    lines: List[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        m = _PLAN.match(line)
        if m and out.plan is None:
            out.plan = int(m.group(1))
            continue
        m = _TOTALS.match(line)
        if m:
            out.totals = m.group(1)
            continue
        m = _RUN.match(line)
        if m:
            running, lines = m.group(1), [line]
            continue
        m = _RESULT.match(line)
        if not m:
            if running is not None or line.startswith("#"):
                lines.append(line)
            continue
        status, number, rest = m.group(1), int(m.group(2)), m.group(3)
        description, _, directive = rest.partition("# ")
        word, _, why = directive.strip().partition(" ")
        word = word.upper()
        if status == "ok" and word == "SKIP":
            verdict, reason = SKIP, why.strip() or "skipped (no reason given)"
        elif status == "ok":
            verdict = PASS
            xfail = f"(XFAIL: {why.strip()})" if word == "XFAIL" else ""
            reason = " ".join(x for x in (description.strip(), xfail) if x)  # "ok 33 # XFAIL why": no name
        elif word == "ERROR":
            verdict, reason = ERROR, why.strip() or description.strip() or "the test reported an error"
        else:
            verdict, reason = FAIL, description.strip() or why.strip() or "the test reported failure"
        name = _unique(running if running is not None else description.strip(), seen, number)
        out.cases.append(Case(number, name, verdict, reason or verdict.lower(), (lines + [line])[-KEEP_LINES:]))
        running, lines = None, []
    if running is not None:
        out.unfinished, out.unfinished_lines = running, lines[-KEEP_LINES:]
    return out


def parse_uffd_unit(text: str) -> Output:
    """uffd-unit-tests: "Testing NAME... done", "... skipped [reason: R]", "... failed [reason: R]"; a case
    whose line has anything else after the dots (an err() exit: "ERROR: ...") failed with that text."""
    out = Output([])
    seen: set = set()
    for raw in text.splitlines():
        line = raw.rstrip()
        m = _UFFD_SUMMARY.match(line)
        if m:
            out.totals = m.group(1)
            continue
        m = _UFFD.match(line)
        if not m:
            if out.unfinished is not None:
                out.unfinished_lines.append(line)
            continue
        name, said = m.group(1), m.group(2).strip()
        number = len(out.cases) + 1
        if not said:
            out.unfinished, out.unfinished_lines = name, [line]
            continue
        out.unfinished, out.unfinished_lines = None, []
        if said == "done":
            verdict, reason = PASS, "done"
        elif said.startswith("skipped"):
            verdict, reason = SKIP, _bracketed(said) or "skipped"
        elif said.startswith("failed"):
            verdict, reason = FAIL, _bracketed(said) or "failed"
        else:
            verdict, reason = FAIL, said
        out.cases.append(Case(number, _unique(name, seen, number), verdict, reason, [line]))
    return out


def _bracketed(said: str) -> str:
    m = re.search(r"\[reason: (.*)\]\s*$", said)
    return m.group(1).strip() if m else ""
