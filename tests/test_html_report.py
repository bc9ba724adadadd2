# SPDX-License-Identifier: GPL-2.0-only
"""The matrix HTML page in headless Chromium: cells, colours per verdict, evidence after a real click, and
the cow selftest's ~175 rows grouped under their questions."""

import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from chromium import Chromium, find_binary
from matrix_run_once import ARGS, booted_matrix
from uffdprobe.results.html import COLOURS

pytestmark = [
    pytest.mark.vm,
    pytest.mark.timeout(3600),  # the shared matrix may build `stock` cold
    pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp scenarios need root here"),
    pytest.mark.skipif(find_binary() is None, reason="no chromium: apt-get install -y chromium"),
]


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture
def page(tmp_path_factory, tmp_path):
    booted = booted_matrix(tmp_path_factory)
    assert booted["html"].exists(), booted["proc"].stderr[-2000:]
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = Chromium(find_binary(), profile)
    try:
        browser.open(booted["html"].as_uri())
        yield browser, booted
    finally:
        browser.close()


def test_rendered_table_colours_and_click(page, tmp_path):
    browser, booted = page
    cells = browser.js("""[...document.querySelectorAll('td.cell')].map(td => ({
        text: td.innerText, verdict: td.dataset.verdict, mark: td.dataset.mark,
        bg: getComputedStyle(td).backgroundColor, col: td.cellIndex,
        row: td.parentElement.dataset.scenario}))""")
    assert len(cells) == len(booted["data"]["cells"])
    heads = browser.js("[...document.querySelectorAll('thead th')].map(th => th.innerText.split('\\n')[0])")
    assert heads == ["scenario: memory kind", "host", "stock"]
    for c in cells:
        assert c["bg"] == rgb(COLOURS[c["verdict"]]), c
    seen = {c["verdict"] for c in cells}
    assert {"PASS", "HANG", "FLAKY"} <= seen
    assert len({c["bg"] for c in cells}) == len(seen)  # one colour per verdict, none shared
    umap = next(c for c in cells if c["row"].startswith("umap-evict") and c["col"] == 2)
    assert (umap["verdict"], umap["mark"]) == ("HANG", "REGRESSION") and "REGRESSION" in umap["text"]
    flaky = next(c for c in cells if c["verdict"] == "FLAKY")
    assert "HANG 1/2" in flaky["text"] and "PASS 1/2" in flaky["text"]

    assert "Click a cell" in browser.js("document.getElementById('detail').innerText")
    target = browser.js(
        "[...document.querySelectorAll('td.cell')].find(td => td.dataset.verdict === 'HANG' &&"
        " td.cellIndex === 2 && td.parentElement.dataset.scenario === 'umap-evict').dataset.cell"
    )
    browser.click(f"td.cell[data-cell='{target}']")
    detail = browser.js("document.getElementById('detail').innerText")
    assert "stock: umap-evict (anon-4k)" in detail
    for fact in (
        "state",
        "wchan",
        "handle_userfault",
        "kernel stack",
        "Kernel identity",
        "sha256",
        "Boot and timings",
        "launch_to_init",
        "console_log",
        "Console excerpt",
    ):
        assert fact in detail, fact
    assert browser.js("document.querySelector('td.cell.selected').dataset.verdict") == "HANG"

    # the panel was scrolled into view: its top is inside the viewport
    top = browser.js("document.getElementById('detail').getBoundingClientRect().top")
    assert -1 < top < browser.js("window.innerHeight")  # scrollIntoView may leave a sub-pixel offset

    shot = browser.screenshot(tmp_path / "matrix.png")
    keep = booted["dir"] / "matrix-clicked.png"
    keep.write_bytes(shot.read_bytes())
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {keep}")


def test_page_is_self_contained(tmp_path_factory):
    text = booted_matrix(tmp_path_factory)["html"].read_text()
    for remote in ("http://", "https://", "<link", "src="):
        assert remote not in text.split("<script type=\"application/json\"")[0], remote


def test_legend_questions_kernels_footer_and_marks(page):
    """The legend explains the words the cells show; rows carry their question, kernel columns what the
    kernel is; cells look clickable; declared and undeclared bad verdicts look different."""
    browser, booted = page
    legend = browser.js("document.getElementById('legend').innerText")
    words = browser.js(
        "[...document.querySelectorAll('td.cell')].map(td => [td.dataset.verdict, td.querySelector('small').innerText])"
    )
    for verdict, mark in words:
        assert verdict in legend and (not mark or f"{mark}:" in legend), (verdict, mark)
    assert "no word: PASS or SKIP with nothing declared" in legend
    groups = browser.js(
        "[...document.querySelectorAll('tbody[data-group]')].map(g => [g.dataset.group,"
        " g.querySelector('small.question').innerText, [...g.querySelectorAll('tr[data-scenario]')]"
        ".map(tr => [tr.dataset.scenario, tr.dataset.memory, tr.querySelector('th.row').innerText])])"
    )
    from uffdprobe.scenarios.registry import SCENARIOS

    table = browser.js("document.getElementById('matrix').innerText")
    assert sorted(g[0] for g in groups) == sorted(ARGS[i + 1] for i, a in enumerate(ARGS) if a == "--scenario")
    for scenario, question, rows in groups:  # the question once, above its memory kinds' rows
        assert question == SCENARIOS[scenario].question and table.count(question) == 1
        assert [(s, label) for s, _, label in rows] == [(scenario, memory) for _, memory, _ in rows]
    heads = browser.js("[...document.querySelectorAll('thead th small.kernel-about')].map(e => e.innerText)")
    from uffdprobe.kbuild import recipes

    assert heads == ["the running kernel", recipes.load("stock").summary]
    assert browser.js("getComputedStyle(document.querySelector('td.cell')).cursor") == "pointer"
    footer = browser.js("document.getElementById('footer').innerText")
    import uffdprobe

    assert f"uffdprobe {uffdprobe.version()}" in footer and "uffdprobe matrix --kernel host --kernel stock" in footer
    style = (
        "(sel => { const s = getComputedStyle(document.querySelector(sel)); return [s.backgroundImage, s.boxShadow]; })"
    )
    declared = browser.js(style + "('.legend .m-expected')")
    undeclared = browser.js(style + "('.legend .m-UNEXPECTED')")  # a bad verdict nothing declares
    assert "gradient" in declared[0] and undeclared[0] == "none" and declared[1] != undeclared[1]
    flaky = browser.js(style + "('td.cell.bad[data-mark=\"UNEXPECTED\"]')")  # FLAKY selftest: undeclared
    assert flaky == undeclared


@pytest.fixture(scope="module")
def cow_selftest_page(tmp_path_factory):
    """`matrix --kernel stock --kselftest cow` (one scenario beside it): about 175 selftest rows, rendered."""
    out = tmp_path_factory.mktemp("cow-html")
    html_file, data_file = out / "report.html", out / "matrix.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            "stock",
            "--scenario",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--memory",
            "anon-thp",
            "--kselftest",
            "cow",
            "--results-dir",
            str(out / "results"),
            "--html",
            str(html_file),
            "--json",
            str(data_file),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=3000,
        cwd="/",
    )
    assert html_file.exists(), proc.stderr[-2000:]
    profile = out / "profile"
    profile.mkdir()
    browser = Chromium(find_binary(), profile, timeout=60)
    try:
        browser.open(html_file.as_uri())
        yield browser, out, json.loads(data_file.read_text())
    finally:
        browser.close()


def test_175_selftest_rows_grouped_with_readable_evidence(cow_selftest_page):
    """At the cow selftest's ~175 rows: every row rendered, each question once (rows grouped by scenario or
    selftest program), and a cell's evidence a definition list with ISO times and relative links that
    resolve, no raw JSON."""
    browser, out, data = cow_selftest_page
    rows = browser.js("[...document.querySelectorAll('tr[data-scenario]')].map(tr => tr.dataset.scenario)")
    assert len(rows) == len({(c["scenario"], c["memory"]) for c in data["cells"]}) >= 170
    groups = browser.js("[...document.querySelectorAll('tbody[data-group]')].map(g => g.dataset.group)")
    assert groups == ["cow-leak", "cow"]
    table = browser.js("document.getElementById('matrix').innerText")
    from uffdprobe.scenarios.registry import SCENARIOS

    assert table.count(SCENARIOS["cow-leak"].question) == 1 and table.count("the kernel's own mm selftest cow") == 1
    assert browser.js("document.documentElement.scrollHeight") < 60 * len(rows)  # rows stay one line-ish high

    for scenario in ("cow-leak", "cow", next(r for r in rows if r.startswith("cow: "))):
        cell = browser.js(f"document.querySelector('tr[data-scenario={json.dumps(scenario)}] td.cell').dataset.cell")
        browser.click(f"td.cell[data-cell='{cell}']")
        browser.js("document.querySelectorAll('#detail details').forEach(d => d.open = true)")
        text = browser.js("document.getElementById('detail').innerText")
        assert scenario in text and "Boot and timings" in text, text[:500]
        assert '{"' not in text and '":' not in text and "[]" not in text, text  # no JSON anywhere
        assert not re.search(r"\b1[6-9]\d{8}(\.\d+)?\b", text), text  # no epoch seconds
        assert re.search(r"started_at\s+20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text), text
        links = browser.js("[...document.querySelectorAll('#detail a')].map(a => [a.getAttribute('href'), a.href])")
        assert any(href.endswith("console.log") for href, _ in links), links
        for href, resolved in links:
            path = Path(urllib.parse.unquote(urllib.parse.urlparse(resolved).path))
            assert path.exists(), (href, resolved)
            if out in path.parents:  # a file of the results folder: named relative to the report
                assert not href.startswith("/") and not href.startswith("file:"), href
    shot = browser.screenshot(out / "cow-175.png")
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
