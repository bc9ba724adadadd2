# SPDX-License-Identifier: GPL-2.0-only
"""The matrix HTML page in headless Chromium: cells, colours per verdict, evidence after a real click."""
import os

import pytest

from chromium import Chromium, find_binary
from matrix_run_once import booted_matrix
from uffdprobe.results.html import COLOURS

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600),  # the shared matrix may build `stock` cold
              pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp scenarios need root here"),
              pytest.mark.skipif(find_binary() is None, reason="no chromium: apt-get install -y chromium")]


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
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
        row: td.parentElement.querySelector('th').innerText}))""")
    assert len(cells) == len(booted["data"]["cells"])
    heads = browser.js("[...document.querySelectorAll('thead th')].map(th => th.innerText.split('\\n')[0])")
    assert heads == ["scenario (memory)", "host", "stock"]
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
    target = browser.js("[...document.querySelectorAll('td.cell')].find(td => td.dataset.verdict === 'HANG' &&"
                        " td.cellIndex === 2 && td.parentElement.innerText.startsWith('umap-evict')).dataset.cell")
    browser.click(f"td.cell[data-cell='{target}']")
    detail = browser.js("document.getElementById('detail').innerText")
    assert "stock: umap-evict (anon-4k)" in detail
    for fact in ("state", "wchan", "handle_userfault", "kernel stack", "Kernel identity", "sha256",
                 "Boot and timings", "launch_to_init", "console_log", "Console excerpt"):
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
    words = browser.js("[...document.querySelectorAll('td.cell')].map(td => [td.dataset.verdict,"
                       " td.querySelector('small').innerText])")
    for verdict, mark in words:
        assert verdict in legend and (not mark or f"{mark}:" in legend), (verdict, mark)
    assert "no word: PASS or SKIP with nothing declared" in legend
    rows = browser.js("[...document.querySelectorAll('th.row')].map(th => [th.innerText, th.title])")
    from uffdprobe.scenarios.registry import SCENARIOS
    for text, title in rows:
        scenario = text.split()[0]
        assert title == SCENARIOS[scenario].question and SCENARIOS[scenario].question in text
    heads = browser.js("[...document.querySelectorAll('thead th small.kernel-about')].map(e => e.innerText)")
    from uffdprobe.kbuild import recipes
    assert heads == ["the running kernel", recipes.load("stock").summary]
    assert browser.js("getComputedStyle(document.querySelector('td.cell')).cursor") == "pointer"
    footer = browser.js("document.getElementById('footer').innerText")
    import uffdprobe
    assert f"uffdprobe {uffdprobe.version()}" in footer and "uffdprobe matrix --kernel host --kernel stock" in footer
    style = ("(sel => { const s = getComputedStyle(document.querySelector(sel));"
             " return [s.backgroundImage, s.boxShadow]; })")
    declared = browser.js(style + "('.legend .m-expected')")
    undeclared = browser.js(style + "('.legend .m-UNEXPECTED')")  # a bad verdict nothing declares
    assert "gradient" in declared[0] and undeclared[0] == "none" and declared[1] != undeclared[1]
    flaky = browser.js(style + "('td.cell.bad[data-mark=\"UNEXPECTED\"]')")  # FLAKY selftest: undeclared
    assert flaky == undeclared
