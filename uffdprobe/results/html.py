"""The matrix as one self-contained HTML page: coloured cells, evidence on click, no network needed."""
import html
import json
import time

from . import evidence as evidence_view
from .matrix import Cell, KernelRun, Matrix
from .table import LEGEND

#: Background per verdict; the Chromium test reads these back from the rendered page.
COLOURS = {"PASS": "#b9e4bb", "SKIP": "#dddddd", "HANG": "#f28b82", "LEAK": "#d7aefb", "WP_LOST": "#fdd663",
           "FLAKY": "#fff475", "ERROR": "#5f6368", "BUILD_FAIL": "#5f6368", "BOOT_FAIL": "#5f6368",
           "PANIC": "#3c4043", "VM_TIMEOUT": "#5f6368"}
_WHITE_TEXT = {"ERROR", "BUILD_FAIL", "BOOT_FAIL", "PANIC", "VM_TIMEOUT"}

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #202124; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
table.matrix { border-collapse: collapse; margin: 1em 0; }
.matrix th, .matrix td { border: 1px solid #9aa0a6; padding: .35em .7em; text-align: left; }
.matrix thead th { background: #f1f3f4; vertical-align: bottom; }
.matrix td.cell { cursor: pointer; min-width: 7em; font-weight: 600; }
.matrix td.cell small { display: block; font-weight: 400; font-size: .8em; }
.matrix td.cell.selected { outline: 3px solid #1a73e8; outline-offset: -3px; }
.matrix td.m-REGRESSION { box-shadow: inset 0 0 0 3px #b3261e; }
.matrix td.m-FIXED { box-shadow: inset 0 0 0 3px #1967d2; }
.matrix td.m-UNEXPECTED { box-shadow: inset 0 0 0 3px #e37400; }
%(verdicts)s
.legend span { display: inline-block; padding: 0 .5em; margin-right: .3em; border: 1px solid #9aa0a6; }
#detail { border-top: 2px solid #9aa0a6; padding-top: .5em; max-width: 75em; }
#detail pre { background: #f8f9fa; padding: .5em; overflow-x: auto; font-size: .85em; }
#detail dl { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; margin: 0; }
#detail dt { font-weight: 600; } #detail dd { margin: 0; font-family: monospace; overflow-wrap: anywhere; }
#detail h3 { margin: .8em 0 .3em; font-size: 1em; }
.hint { color: #5f6368; }
"""

_JS = """
const cells = JSON.parse(document.getElementById('cells').textContent);
const detail = document.getElementById('detail');
function el(tag, text) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; }
function facts(title, obj) {
  const box = el('div'); box.appendChild(el('h3', title)); const dl = el('dl');
  for (const [k, v] of Object.entries(obj || {})) {
    if (v === null || v === undefined || v === '') continue;
    dl.appendChild(el('dt', k));
    dl.appendChild(el('dd', typeof v === 'object' ? JSON.stringify(v) : String(v)));
  }
  box.appendChild(dl); return box;
}
function show(i) {
  const c = cells[i];
  document.querySelectorAll('td.cell.selected').forEach(e => e.classList.remove('selected'));
  document.querySelector('td.cell[data-cell="' + i + '"]').classList.add('selected');
  detail.replaceChildren();
  detail.appendChild(el('h2', c.kernel + ': ' + c.scenario + ' (' + c.memory + ')'));
  detail.appendChild(facts('Verdict', {verdict: c.label, expected: c.expected, mark: c.mark}));
  c.runs.forEach(r => {
    const box = facts('Run ' + (r.summary.run || 1), r.summary);
    if (r.stack && r.stack.length) { box.appendChild(el('h4', 'kernel stack')); box.appendChild(el('pre', r.stack.join('\\n'))); }
    const more = el('details'); more.appendChild(el('summary', 'all evidence'));
    more.appendChild(el('pre', JSON.stringify(r.evidence, null, 1))); box.appendChild(more);
    detail.appendChild(box);
  });
  detail.appendChild(facts('Kernel identity', c.identity));
  detail.appendChild(facts('Boot and timings', c.boot));
  if (c.console && c.console.length) {
    detail.appendChild(el('h3', 'Console excerpt (last lines)'));
    detail.appendChild(el('pre', c.console.join('\\n')));
  }
}
document.querySelectorAll('td.cell').forEach(td => {
  td.addEventListener('click', () => show(td.dataset.cell));
  td.addEventListener('keydown', e => { if (e.key === 'Enter') show(td.dataset.cell); });
});
"""


def _cell_data(c: Cell, k: KernelRun) -> dict:
    boot = {key: value for key, value in k.boot.items() if key not in ("console_excerpt", "panic_lines")}
    runs = [{"summary": evidence_view.summary(r), "evidence": r.evidence,
             "stack": (evidence_view.blocked_tasks(r) or [{}])[0].get("stack") or []} for r in c.results]
    return {"kernel": c.kernel, "scenario": c.scenario, "memory": c.memory, "label": c.label,
            "verdict": c.verdict, "expected": c.expected, "mark": c.mark or "undeclared", "runs": runs,
            "identity": k.identity, "boot": boot, "console": k.boot.get("console_excerpt") or []}


def render(m: Matrix, title: str = "uffdprobe matrix") -> str:
    """The whole page as a string; every value is escaped, the data rides along as inline JSON."""
    esc = html.escape
    data, body = [], []
    for scenario, memory in m.rows:
        tds = [f"<th>{esc(scenario)} <small>({esc(memory)})</small></th>"]
        for k in m.kernels:
            c = m.cell(k, scenario, memory)
            if c is None:
                tds.append("<td class=\"empty\">-</td>")
                continue
            mark = c.mark or "undeclared"
            note = {"undeclared": "", "expected": "expected"}.get(mark, mark)
            tds.append(f"<td class=\"cell v-{esc(c.verdict)} m-{esc(mark)}\" data-cell=\"{len(data)}\" "
                       f"data-verdict=\"{esc(c.verdict)}\" data-mark=\"{esc(mark)}\" tabindex=\"0\" "
                       f"title=\"{esc(c.results[0].reason)}\">{esc(c.label)}<small>{esc(note)}</small></td>")
            data.append(_cell_data(c, k))
        body.append("<tr>" + "".join(tds) + "</tr>")
    heads = "".join(f"<th title=\"{esc(str(k.identity.get('version') or k.identity.get('release') or ''))}\">"
                    f"{esc(k.label)}<small><br>{esc(str(k.identity.get('release') or ''))}</small></th>"
                    for k in m.kernels)
    verdict_css = "\n".join(f".v-{v} {{ background: {c}; color: {'#fff' if v in _WHITE_TEXT else '#202124'}; }}"
                            for v, c in COLOURS.items())
    legend = "".join(f"<span class=\"v-{v}\">{v}</span>" for v in COLOURS)
    payload = json.dumps(data, default=str).replace("</", "<\\/")
    unexpected = len(m.unexpected())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{_CSS % {"verdicts": verdict_css}}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="hint">{len(m.kernels)} kernel(s), {len(data)} cell(s), {unexpected} unexpected;
generated {esc(time.strftime("%Y-%m-%d %H:%M:%S %Z"))}. {esc(LEGEND)}.</p>
<p class="legend">{legend}</p>
<table class="matrix" id="matrix"><thead><tr><th>scenario (memory)</th>{heads}</tr></thead>
<tbody>{"".join(body)}</tbody></table>
<section id="detail"><p class="hint">Click a cell to see its evidence.</p></section>
<script type="application/json" id="cells">{payload}</script>
<script>{_JS}</script>
</body></html>
"""
