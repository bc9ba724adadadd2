# SPDX-License-Identifier: GPL-2.0-only
"""The matrix as one self-contained HTML page: coloured cells, evidence on click, no network needed."""

import datetime
import html
import json
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from . import evidence as evidence_view
from .matrix import EXPECTED, FIXED, REGRESSION, UNEXPECTED, Cell, CellMark, Flaky, KernelRun, Mark, Matrix
import uffdprobe
from uffdprobe.verdicts import plain

#: Background per verdict; the Chromium test reads these back from the rendered page.
COLOURS = {
    "PASS": "#b9e4bb",
    "SKIP": "#dddddd",
    "HANG": "#f28b82",
    "LEAK": "#d7aefb",
    "WP_LOST": "#fdd663",
    "FAIL": "#f6aea9",
    "STUCK": "#fcad70",
    "WARN": "#ffb300",
    "OOPS": "#e8710a",
    "REFUSED": "#aecbfa",
    "FLAKY": "#fff475",
    "ERROR": "#5f6368",
    "BUILD_FAIL": "#5f6368",
    "BOOT_FAIL": "#5f6368",
    "PANIC": "#3c4043",
    "VM_TIMEOUT": "#5f6368",
}
_WHITE_TEXT = {"ERROR", "BUILD_FAIL", "BOOT_FAIL", "PANIC", "VM_TIMEOUT"}
#: What each verdict word in a cell means.
VERDICT_WORDS = {
    "PASS": "the kernel behaved",
    "SKIP": "the kernel lacks a feature the scenario needs",
    "HANG": "a task blocked in handle_userfault",
    "LEAK": "data crossed a COW boundary",
    "WP_LOST": "a write to a write-protected page was not trapped",
    "FAIL": "the workload reported failure (exit status, a failed selftest case)",
    "STUCK": "a task stuck outside handle_userfault (D state or spinning)",
    "WARN": "the kernel logged a WARNING, a lockdep report or a new taint while it ran",
    "OOPS": "the kernel logged a BUG, Oops or KASAN report (no panic) while it ran",
    "REFUSED": "the kernel refused a valid request (errno in the evidence)",
    "FLAKY": "the runs disagreed (counts per verdict)",
    "ERROR": "the harness or setup failed",
    "BUILD_FAIL": "the kernel did not build",
    "BOOT_FAIL": "the kernel did not boot",
    "PANIC": "the kernel panicked",
    "VM_TIMEOUT": "the boot or the scenarios ran out of time",
}
#: What the mark a cell shows under its verdict means (its word is the mark's text; UNDECLARED shows none).
MARK_WORDS: Dict[Mark, str] = {
    EXPECTED: "as declared for this kernel (a declared bad verdict is hatched)",
    REGRESSION: "worse than declared",
    FIXED: "better than declared (the declaration is out of date)",
    UNEXPECTED: "a bad verdict nothing declares for this kernel, scenario and memory kind, "
    "or neither as declared nor a kernel verdict, or no answer at all",
}
#: What a 'FLAKY V' mark means, V its declared verdict.
FLAKY_WORDS = (
    "declared {verdict}, which only some runs showed: it still happens, so keep the "
    "declaration (or declare it racy, {verdict}>=K/N)"
)
_GOOD = {"PASS", "SKIP"}

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #202124; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
table.matrix { border-collapse: collapse; margin: 1em 0; }
.matrix th, .matrix td { border: 1px solid #9aa0a6; padding: .35em .7em; text-align: left; }
.matrix thead th { background: #f1f3f4; vertical-align: bottom; }
.matrix td.cell { cursor: pointer; min-width: 7em; font-weight: 600; transition: filter .1s; }
.matrix td.cell:hover, .matrix td.cell:focus { filter: brightness(0.88); outline: 2px dashed #1a73e8;
  outline-offset: -4px; }
.matrix thead th { position: sticky; top: 0; z-index: 1; box-shadow: inset 0 -1px #9aa0a6; }
.matrix tbody th, .matrix tbody td { padding: .15em .7em; scroll-margin-top: 8em; }
.matrix th.row { font-weight: 400; padding-left: 1.6em; }
.matrix tr.group th { background: #f8f9fa; border-top: 2px solid #5f6368; font-weight: 600; }
.matrix tr.group small.question { display: block; font-weight: 400; color: #5f6368; max-width: 48em; }
.matrix thead th small.kernel-about { display: block; font-weight: 400; color: #5f6368; max-width: 18em; }
.matrix td.bad.m-expected, .legend .m-expected { background-image: repeating-linear-gradient(135deg,
  rgba(255,255,255,.55) 0 5px, transparent 5px 11px); }
.matrix td.cell small { font-weight: 400; font-size: .8em; margin-left: .5em; }
.matrix td.cell.selected { outline: 3px solid #1a73e8; outline-offset: -3px; }
.m-REGRESSION { box-shadow: inset 0 0 0 3px #b3261e; }
.m-FIXED { box-shadow: inset 0 0 0 3px #1967d2; }
[class*="m-FLAKY-"] { box-shadow: inset 0 0 0 3px #e37400; }
.m-UNEXPECTED { box-shadow: inset 0 0 0 3px #202124, inset 0 0 0 5px #fff; }
%(verdicts)s
.legend span.chip { display: inline-block; padding: .15em .6em; margin-right: .3em; border: 1px solid #9aa0a6;
  font-weight: 600; }
.legend dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: .3em 0; }
.legend dd { margin: 0; align-self: center; }
footer { margin-top: 2em; color: #5f6368; font-size: .85em; border-top: 1px solid #dadce0; padding-top: .5em; }
footer code { overflow-wrap: anywhere; }
.layout { display: flex; gap: 0 2em; align-items: flex-start; }
.layout > .left { flex: 0 1 auto; min-width: 20em; }
@media (max-width: 60em) { .layout { flex-wrap: wrap; } }
#detail { flex: 1 0 32em; min-width: 0; position: sticky; top: .5em; max-height: calc(100vh - 1em); overflow-y: auto;
  border-top: 2px solid #9aa0a6; padding-top: .5em; margin-top: 1em; }
#detail h2 { font-size: 1.1em; margin: .2em 0; }
#detail pre { background: #f8f9fa; padding: .5em; overflow-x: auto; font-size: .85em; margin: 0; }
#detail dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .15em 1em; margin: 0; }
#detail dl dl { border-left: 2px solid #dadce0; padding-left: .6em; }
#detail dt { font-weight: 600; } #detail dd { margin: 0; font-family: monospace; overflow-wrap: anywhere; }
#detail ol { margin: 0; padding-left: 1.5em; }
#detail h3 { margin: .8em 0 .3em; font-size: 1em; }
.hint { color: #5f6368; }
"""

_JS = """
const cells = JSON.parse(document.getElementById('cells').textContent);
const detail = document.getElementById('detail');
function el(tag, text) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; }
function isFile(key) {  // a file of the results folder (or the kernel cache): a link to it
  return ['log', 'folder', 'run_dir'].includes(key) || /_(log|file|dir)$/.test(key);
}
function view(key, v) {  // one value as a node: nested facts as definition lists, lines as text, never JSON
  if (Array.isArray(v)) {
    if (v.every(x => x === null || typeof x !== 'object')) return el('pre', v.join('\\n'));
    const ol = el('ol'); v.forEach(x => { const li = el('li'); li.appendChild(view(key, x)); ol.appendChild(li); });
    return ol;
  }
  if (v !== null && typeof v === 'object') return dl(v);
  if (typeof v === 'string' && isFile(key)) { const a = el('a', v); a.href = v; return a; }
  if (typeof v === 'string' && v.includes('\\n')) return el('pre', v);
  return document.createTextNode(String(v));
}
function empty(v) {
  return v === null || v === undefined || v === '' || (Array.isArray(v) && !v.length) ||
    (typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length);
}
function dl(obj) {
  const list = el('dl');
  for (const [k, v] of Object.entries(obj || {})) {
    if (empty(v)) continue;
    list.appendChild(el('dt', k)); const dd = el('dd'); dd.appendChild(view(k, v)); list.appendChild(dd);
  }
  return list;
}
function facts(title, obj) { const box = el('div'); box.appendChild(el('h3', title)); box.appendChild(dl(obj)); return box; }
function show(i) {
  const c = cells[i];
  document.querySelectorAll('td.cell.selected').forEach(e => e.classList.remove('selected'));
  document.querySelector('td.cell[data-cell="' + i + '"]').classList.add('selected');
  detail.replaceChildren();
  detail.appendChild(el('h2', c.kernel + ': ' + c.scenario + (c.memory === '-' ? '' : ' (' + c.memory + ')')));
  detail.appendChild(facts('Verdict', {verdict: c.label, expected: c.expected, mark: c.mark}));
  c.runs.forEach(r => {
    const box = facts('Run ' + (r.summary.run || 1), r.summary);
    if (r.stack && r.stack.length) { box.appendChild(el('h4', 'kernel stack')); box.appendChild(el('pre', r.stack.join('\\n'))); }
    const more = el('details'); more.appendChild(el('summary', 'all evidence'));
    more.appendChild(dl(r.evidence)); box.appendChild(more);
    detail.appendChild(box);
  });
  detail.appendChild(facts('Kernel identity', c.identity));
  detail.appendChild(facts('Boot and timings', c.boot));
  if (c.console && c.console.length) {
    detail.appendChild(el('h3', 'Console excerpt (last lines)'));
    detail.appendChild(el('pre', c.console.join('\\n')));
  }
  detail.scrollTop = 0;
  detail.scrollIntoView({block: 'nearest'});
}
document.querySelectorAll('td.cell').forEach(td => {
  td.addEventListener('click', () => show(td.dataset.cell));
  td.addEventListener('keydown', e => { if (e.key === 'Enter') show(td.dataset.cell); });
});
"""


def readable(value: Any, key: str = "") -> Any:
    """`value` (evidence, boot facts) with every epoch time (a number under a key ending in `_at`, or
    `installed`) written as an ISO 8601 UTC time, for a reader; everything else as it was."""
    if isinstance(value, dict):
        return {k: readable(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v, key) for v in value]
    if (
        (key.endswith("_at") or key == "installed")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
    ):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).isoformat(timespec="seconds")
    return value


def _cell_data(c: Cell, k: KernelRun) -> Dict[str, Any]:
    boot = readable({key: value for key, value in k.boot.items() if key not in ("console_excerpt", "panic_lines")})
    runs = [
        {
            "summary": evidence_view.summary(r),
            "evidence": readable(r.evidence),
            "stack": (evidence_view.blocked_tasks(r) or [{}])[0].get("stack") or [],
        }
        for r in c.results
    ]
    return {
        "kernel": c.kernel,
        "scenario": c.scenario,
        "memory": c.memory,
        "label": c.label,
        "verdict": c.verdict,
        "expected": c.expected,
        "mark": _mark_text(c.mark),
        "runs": runs,
        "identity": readable(k.identity),
        "boot": boot,
        "console": k.boot.get("console_excerpt") or [],
    }


def kernel_about(k: KernelRun) -> str:
    """A kernel column's second line: the recipe's summary, the kernel file, or the running kernel."""
    ident = k.identity
    if ident.get("summary"):
        return str(ident["summary"])
    if ident.get("path"):
        return str(ident["path"])
    return "the running kernel" if k.label == "host" else str(ident.get("release") or "")


def _question(scenario: str) -> str:
    from uffdprobe.scenarios.registry import SCENARIOS

    found = SCENARIOS.get(scenario)
    if found is None:  # a selftest's run row: its program's question (its cases say theirs by name)
        from uffdprobe.supervise.kselftest import PROGRAMS

        program = PROGRAMS.get(scenario)
        return f"the kernel's own mm selftest {program.name}: {program.question}" if program else ""
    return found.question


def _group(scenario: str, memory: str) -> Tuple[str, str]:
    """A row's group (its scenario, or a selftest case's program) and its own label inside the group (the
    memory kind, or the case's name; a selftest program's own row is its exit status)."""
    from uffdprobe.supervise.kselftest import PROGRAMS, SEPARATOR

    program, sep, case = scenario.partition(SEPARATOR)
    if sep and program in PROGRAMS:
        return program, case
    if scenario in PROGRAMS:
        return scenario, "the program's exit status"
    return scenario, memory


def groups(rows: List[Tuple[str, str]]) -> Dict[str, List[Tuple[str, str, str]]]:
    """Rows (scenario, memory) gathered by group in the order each group first appears: group ->
    [(scenario, memory, label)]."""
    out: Dict[str, List[Tuple[str, str, str]]] = {}
    for scenario, memory in rows:
        group, label = _group(scenario, memory)
        out.setdefault(group, []).append((scenario, memory, label))
    return out


def _mark_text(mark: CellMark) -> str:
    """A mark as a cell's data-mark and the page's data say it: its text, 'undeclared' for UNDECLARED."""
    return str(mark) or "undeclared"


def _mark_class(mark: CellMark) -> str:
    """A mark as one CSS class name: 'FLAKY HANG' -> 'FLAKY-HANG'."""
    return _mark_text(mark).replace(" ", "-")


def _mark_meaning(mark: CellMark) -> str:
    """What a mark means; 'FLAKY HANG' names its verdict."""
    if isinstance(mark, Flaky):
        return FLAKY_WORDS.format(verdict=mark.verdict.value)
    return MARK_WORDS.get(mark, str(mark))


def _legend(marks: Set[CellMark]) -> str:
    esc = html.escape
    verdicts = "".join(
        f"<dt><span class=\"chip v-{v}\">{v}</span></dt><dd>{esc(VERDICT_WORDS.get(v, ''))}</dd>" for v in COLOURS
    )
    shown = [EXPECTED, REGRESSION, FIXED, UNEXPECTED] + sorted((m for m in marks if isinstance(m, Flaky)), key=str)
    rows = [
        f"<dt><span class=\"chip v-HANG m-{esc(_mark_class(m))} bad\">HANG <small>{esc(str(m))}</small></span></dt>"
        f"<dd>{esc(str(m))}: {esc(_mark_meaning(m))}</dd>"
        for m in shown
    ]
    rows.append(
        "<dt><span class=\"chip v-PASS m-undeclared\">PASS</span></dt>"
        "<dd>no word: PASS or SKIP with nothing declared for this kernel, scenario and memory kind</dd>"
    )
    return (
        f"<div class=\"legend\" id=\"legend\"><dl>{verdicts}</dl>"
        f"<p>Under the verdict, how it compares with what is declared:</p><dl>{''.join(rows)}</dl></div>"
    )


def render(m: Matrix, title: str = "uffdprobe matrix", argv: Optional[List[str]] = None) -> str:
    """The whole page as a string; every value is escaped, the data rides along as inline JSON."""
    esc = html.escape
    data: List[Dict[str, Any]] = []
    body: List[str] = []
    marks: Set[CellMark] = set()
    for group, rows in groups(m.rows).items():
        question = _question(group)
        body.append(
            f"<tbody data-group=\"{esc(group)}\"><tr class=\"group\"><th colspan=\"{len(m.kernels) + 1}\">"
            f"{esc(group)}<small class=\"question\">{esc(question)}</small></th></tr>"
        )
        for scenario, memory, label in rows:
            tds = [f"<th class=\"row\" title=\"{esc(scenario)} ({esc(memory)})\">{esc(label)}</th>"]
            for k in m.kernels:
                c = m.cell(k, scenario, memory)
                if c is None:
                    tds.append("<td class=\"empty\">-</td>")
                    continue
                mark = c.mark
                marks.add(mark)
                bad = "" if all(r.verdict.value in _GOOD for r in c.results) else " bad"
                tds.append(
                    f"<td class=\"cell v-{esc(c.verdict)} m-{esc(_mark_class(mark))}{bad}\" "
                    f"data-cell=\"{len(data)}\" data-verdict=\"{esc(c.verdict)}\" data-mark=\"{esc(_mark_text(mark))}\" "
                    f"tabindex=\"0\" role=\"button\" title=\"{esc(c.results[0].reason)} (click for the "
                    f"evidence)\">{esc(c.label)}<small>{esc(str(mark))}</small></td>"
                )
                data.append(_cell_data(c, k))
            body.append(f"<tr data-scenario=\"{esc(scenario)}\" data-memory=\"{esc(memory)}\">{''.join(tds)}</tr>")
        body.append("</tbody>")
    heads = "".join(
        f"<th title=\"{esc(str(k.identity.get('version') or k.identity.get('release') or ''))}\">"
        f"{esc(k.label)}<small><br>{esc(str(k.identity.get('release') or ''))}</small>"
        f"<small class=\"kernel-about\">{esc(kernel_about(k))}</small></th>"
        for k in m.kernels
    )
    verdict_css = "\n".join(
        f".v-{v} {{ background-color: {c}; color: {'#fff' if v in _WHITE_TEXT else '#202124'}; }}"
        for v, c in COLOURS.items()
    )
    payload = json.dumps(plain(data)).replace("</", "<\\/")
    unexpected = len(m.unexpected())
    command = " ".join(["uffdprobe"] + list(sys.argv if argv is None else argv)[1:])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{_CSS % {"verdicts": verdict_css}}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="hint">{len(m.kernels)} kernel(s), {len(data)} cell(s), {unexpected} unexpected;
generated {esc(time.strftime("%Y-%m-%d %H:%M:%S %Z"))}. Click a cell for its evidence.</p>
<div class="layout"><div class="left">
<table class="matrix" id="matrix"><thead><tr><th>scenario: memory kind</th>{heads}</tr></thead>
{"".join(body)}</table>
{_legend(marks)}
</div>
<section id="detail"><p class="hint">Click a cell to see its evidence.</p></section>
</div>
<footer id="footer">uffdprobe {esc(uffdprobe.version())} &middot; <code>{esc(command)}</code></footer>
<script type="application/json" id="cells">{payload}</script>
<script>{_JS}</script>
</body></html>
"""
