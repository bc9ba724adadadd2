# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe matrix` for real: the host and the stock recipe booted once, JSON and JUnit read back."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from formats import valid_json, valid_junit
from matrix_run_once import booted_matrix, cell
from uffdprobe.results.expect import cell_mark, failing, parse as parse_declaration
from uffdprobe.results.matrix import EXPECTED, FIXED, REGRESSION, UNDECLARED, UNEXPECTED, Flaky, judge
from uffdprobe.verdicts import Verdict

pytestmark = pytest.mark.timeout(3600)  # the shared matrix may build the `stock` recipe cold

root = pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp scenarios need root here")


def matrix(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", "matrix", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    return booted_matrix(tmp_path_factory)


@pytest.mark.vm
@root
def test_matrix_over_host_and_a_booted_kernel(booted):
    proc, data = booted["proc"], booted["data"]
    assert proc.returncode == 7, proc.stderr[-3000:]  # the REGRESSION, FIXED and undeclared HANGs below
    valid_json(data, "matrix")
    for path in (booted["dir"] / "work").glob("*/results.json"):
        valid_json(path, "results")
    assert [k["label"] for k in data["kernels"]] == ["host", "stock"]
    host, stock = data["kernels"]
    assert host["identity"]["release"] == os.uname().release
    assert stock["identity"]["release"].startswith("6.1.") and stock["identity"]["recipe"] == "stock"
    assert len(stock["identity"]["sha256"]) == 64 and stock["identity"]["config_sha256"]
    assert os.path.exists(stock["boot"]["console_log"]) and stock["boot"]["timings"]["launch_to_init"] > 0
    assert stock["boot"]["console_excerpt"]
    rows = {(r["scenario"], r["memory"]) for r in data["rows"]}
    assert {(c["kernel"], c["scenario"], c["memory"]) for c in data["cells"]} == {
        (k, s, m) for k in ("host", "stock") for s, m in rows
    }
    assert all(c["runs"] == 2 and {r["params"]["run"] for r in c["results"]} == {1, 2} for c in data["cells"])
    # declared by the stock recipe and met on the booted kernel
    assert cell(data, "stock", "wp-gup-odirect")["mark"] == "expected"
    assert cell(data, "stock", "cow-leak")["verdict"] == "PASS"
    # a real HANG (the test-only circular wait) against the declared PASS, with its evidence
    umap = cell(data, "stock", "umap-evict")
    assert (umap["verdict"], umap["mark"], umap["unexpected"]) == ("HANG", REGRESSION, True)
    blocked = umap["results"][0]["evidence"]["hang"]["blocked_tasks"]
    assert blocked and all(t["wchan"] == "handle_userfault" for t in blocked)
    # declared HANG (for every memory kind), measured PASS: FIXED
    assert cell(data, "host", "wp-gup-odirect")["mark"] == FIXED
    assert cell(data, "host", "wp-gup-odirect", "anon-thp")["mark"] == FIXED
    # nothing declared on the host: its HANG is no less a failure (one rule for every kernel)
    host_umap = cell(data, "host", "umap-evict")
    assert (host_umap["verdict"], host_umap["mark"], host_umap["unexpected"]) == ("HANG", UNEXPECTED, True)
    assert {(c["kernel"], c["scenario"], c["memory"]) for c in data["cells"] if c["unexpected"]} == {
        ("stock", "umap-evict", "anon-4k"),
        ("host", "umap-evict", "anon-4k"),
        ("host", "wp-gup-odirect", "anon-4k"),
        ("host", "wp-gup-odirect", "anon-thp"),
        ("host", "selftest-self-deadlock", "anon-4k"),
        ("stock", "selftest-self-deadlock", "anon-4k"),
    }


@pytest.mark.vm
@root
def test_flaky_detected_on_both_kernels(booted):
    """The middle run of selftest-self-deadlock writes from a helper thread: HANG once, PASS once."""
    for kernel in ("host", "stock"):
        c = cell(booted["data"], kernel, "selftest-self-deadlock")
        assert c["verdict"] == "FLAKY" and c["counts"] == {"HANG": 1, "PASS": 1}, c["label"]
        assert c["label"] in ("FLAKY: HANG 1/2, PASS 1/2", "FLAKY: PASS 1/2, HANG 1/2")
        by_run = {r["params"]["run"]: r["verdict"] for r in c["results"]}
        assert by_run == {1: "HANG", 2: "PASS"}
    assert "FLAKY: " in booted["proc"].stdout


@pytest.mark.vm
@root
def test_junit_contents(booted):
    tree = valid_junit(booted["junit"])
    suites = tree.findall("testsuite")
    assert [s.get("name") for s in suites] == ["host", "stock"]
    cases = {(s.get("name"), c.get("name")): c for s in suites for c in s.findall("testcase")}
    assert len(cases) == len(booted["data"]["cells"]) == int(tree.get("tests"))
    umap = cases[("stock", "umap-evict[anon-4k]")]
    assert umap.get("classname") == "stock.umap-evict"
    assert umap.find("failure").get("type") == REGRESSION and umap.find("properties") is None
    out = umap.find("system-out").text
    assert "wchan: handle_userfault" in out and "expected: PASS" in out and "kernel.release: 6.1." in out
    ok = cases[("stock", "wp-gup-odirect[anon-4k]")]
    assert ok.find("failure") is None and ok.find("skipped") is None
    suite_props = {p.get("name"): p.get("value") for p in suites[1].find("properties")}
    assert suite_props["kernel.recipe"] == "stock" and len(suite_props["kernel.sha256"]) == 64
    # the suite's time is the whole kernel run, boot included: more than its scenarios took
    scenario_s = sum(float(c.get("time")) for c in suites[1].findall("testcase"))
    assert float(suites[1].get("time")) > scenario_s + float(suite_props["boot.timings.launch_to_init"])
    assert suites[1].get("timestamp")
    assert int(tree.get("failures")) == sum(c["unexpected"] for c in booted["data"]["cells"]) == 6


@root
@pytest.mark.reliability(
    "a FLAKY cell whose declared HANG still happens in some runs",
    "marked 'FLAKY HANG' (not FIXED), exit 7; HANG>=1/3 accepts it, exit 0",
)
def test_flaky_on_host_with_three_runs_and_exit_status(tmp_path):
    """Expected HANG with one helper-thread run in three: FLAKY, marked 'FLAKY HANG' (it still happens, so
    not FIXED), exit 7; declared ANY or 'at least once in 3' (HANG>=1/3): exit 0; HANG>=3/3: exit 7."""
    declared = ["HANG", "host:selftest-self-deadlock=ANY", "HANG>=1/3", "HANG>=3/3"]
    outs = [tmp_path / f"m{i}.json" for i in range(len(declared))]

    def run(i):
        expect = declared[i] if ":" in declared[i] else f"selftest-self-deadlock={declared[i]}"
        args = ["--kernel", "host", "--scenario", "selftest-self-deadlock", "--runs", "3"]
        return matrix(*args, "--param", "selftest_helper_write_runs=[3]", "--json", str(outs[i]), "--expect", expect)

    # Four independent real matrices that mostly wait on the hang bound: run side by side, judged one by one.
    with ThreadPoolExecutor(len(declared)) as pool:
        hang, any_, at_least_once, every_time = pool.map(run, range(len(declared)))
    assert hang.returncode == 7, hang.stderr
    c = valid_json(outs[0], "matrix")["cells"][0]
    assert (c["label"], c["mark"]) == ("FLAKY: HANG 2/3, PASS 1/3", "FLAKY HANG")
    assert (
        "FLAKY HANG: host selftest-self-deadlock(anon-4k): expected HANG, got FLAKY: HANG 2/3, PASS 1/3" in hang.stdout
    )
    assert "[1/1] host: done" in hang.stderr
    assert any_.returncode == 0
    assert at_least_once.returncode == 0, at_least_once.stdout + at_least_once.stderr
    c = valid_json(outs[2], "matrix")["cells"][0]
    assert (c["label"], c["mark"], c["expected"]) == ("FLAKY: HANG 2/3, PASS 1/3", "expected", "HANG>=1/3")
    assert every_time.returncode == 7
    assert valid_json(outs[3], "matrix")["cells"][0]["mark"] == "FLAKY HANG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kernel", "no-such"], "not 'host', not a file, not a recipe"),
        (["--kernel", "host", "--kernel", "host"], "given twice"),
        (["--kernel", "host", "--expect", "cow-leak=BROKEN"], "[KERNEL:]SCENARIO[/MEMORY]=VERDICT"),
        (["--kernel", "host", "--expect", "cow-leak=LEAK>=0/5"], "K in LEAK>=K/N must be from 1 to N"),
        (["--kernel", "host", "--expect", "cow-leak=LEAK>=1"], "is not a verdict"),
        (["--kernel", "host", "--expect", "umap-evict/anon-thp=HANG"], "does not run on memory kind 'anon-thp'"),
        (["--kernel", "host", "--expect", "stock:cow-leak=PASS"], "not one of the --kernel values"),
        (["--kernel", "host", "--scenario", "nope"], "unknown scenario nope"),
        (["--kernel", "host", "--param", "bogus=1"], "--param bogus=1"),
        (["--kernel", "host", "--json", "/proc/nope/m.json"], "cannot write /proc/nope/m.json"),
        (["--kernel", "host", "--runs", "0"], "must be from 1 to 100"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = matrix(*args, "--results-dir", str(tmp_path / "w"), timeout=60)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and message in last, proc.stderr  # argparse adds its usage above
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "expected, verdict, mark",
    [
        ("HANG", Verdict.HANG, "expected"),
        ("NOT_HANG", Verdict.LEAK, "expected"),
        ("PASS", Verdict.HANG, REGRESSION),
        ("NOT_LEAK", Verdict.PANIC, REGRESSION),
        ("HANG", Verdict.PASS, FIXED),
        ("HANG", Verdict.LEAK, UNEXPECTED),
        ("PASS", Verdict.ERROR, UNEXPECTED),
        (None, Verdict.PASS, UNDECLARED),
        (None, Verdict.SKIP, UNDECLARED),
        (None, Verdict.HANG, UNEXPECTED),
        (None, Verdict.LEAK, UNEXPECTED),
        (None, Verdict.WP_LOST, UNEXPECTED),
        (None, Verdict.ERROR, UNEXPECTED),
        (None, Verdict.VM_TIMEOUT, UNEXPECTED),
        ("PANIC", Verdict.PANIC, EXPECTED),  # declared for the row the guest died in
        (None, Verdict.PANIC, UNEXPECTED),
        ("PASS", Verdict.PANIC, REGRESSION),
        ("PANIC", Verdict.PASS, FIXED),
        ("PANIC", Verdict.HANG, UNEXPECTED),
        ("PANIC", Verdict.VM_TIMEOUT, UNEXPECTED),
    ],
)
def test_judge(expected, verdict, mark):
    """The marking rule itself (no kernel behaviour claimed here)."""
    assert judge(expected, verdict) == mark


_V = {"H": Verdict.HANG, "P": Verdict.PASS, "L": Verdict.LEAK, "E": Verdict.ERROR}
_FLAKY_HANG = Flaky(Verdict.HANG)


@pytest.mark.parametrize(
    "expected, runs, mark",
    [
        ("HANG", "HHP", _FLAKY_HANG),  # still happens: never FIXED (#27)
        ("HANG", "PPP", FIXED),
        ("HANG", "HHH", EXPECTED),
        ("HANG>=1/3", "HPP", EXPECTED),
        ("HANG>=1/3", "PPP", FIXED),
        ("HANG>=2/3", "HPP", _FLAKY_HANG),
        ("HANG>=1/20", "PPP", EXPECTED),  # fewer runs than N cannot show it gone
        ("HANG>=1/3", "HLP", UNEXPECTED),
        ("HANG>=1/3", "HEP", UNEXPECTED),
        ("ANY", "HLP", EXPECTED),
        ("NOT_HANG", "LP", EXPECTED),
        ("PASS", "PH", REGRESSION),
        (None, "PH", UNEXPECTED),
        (None, "PP", UNDECLARED),
    ],
)
def test_cell_mark_over_runs(expected, runs, mark):
    """The rule over a cell's runs (no kernel behaviour claimed here); a 'FLAKY V' mark fails."""
    got = cell_mark(expected, [_V[c] for c in runs])
    assert got == mark
    assert failing(got) == (mark in (FIXED, UNEXPECTED, REGRESSION, _FLAKY_HANG))


def test_mark_text():
    """A mark's text is what matrix.json, JUnit, KTAP and the page write (schemas/matrix.schema.json)."""
    assert [str(m) for m in (REGRESSION, UNEXPECTED, FIXED, EXPECTED, UNDECLARED)] == [
        "REGRESSION",
        "UNEXPECTED",
        "FIXED",
        "expected",
        "",
    ]
    assert str(_FLAKY_HANG) == f"{_FLAKY_HANG}" == "FLAKY HANG" and f"{FIXED}: x" == "FIXED: x"


@pytest.mark.parametrize(
    "text, want",
    [
        ("HANG", ("HANG", 0, 0)),
        ("HANG>=1/20", ("HANG", 1, 20)),
        ("WP_LOST>=3/3", ("WP_LOST", 3, 3)),
        ("HANG>=0/20", "from 1 to N"),
        ("HANG>=21/20", "from 1 to N"),
        ("PASS>=1/2", "is for a kernel problem"),
        ("PANIC", ("PANIC", 0, 0)),
        ("PANIC>=1/2", "is for a kernel problem"),  # a panic ends the boot: no runs after it to count
        ("HANG>=1", "is not a verdict"),
        ("HANG >= 1/2", "is not a verdict"),
        ("BROKEN", "is not a verdict"),
    ],
)
def test_declaration_syntax(text, want):
    if isinstance(want, tuple):
        assert tuple(parse_declaration(text)) == want
    else:
        with pytest.raises(ValueError, match=want):
            parse_declaration(text)


@pytest.mark.vm
def test_a_quiet_matrix_quiets_its_children_and_still_knows_each_boot(tmp_path):
    """`matrix -q`: the kernel's `uffdprobe run` child is quiet too (no progress lines in its log), and the
    matrix still has the boot's folder, outcome and console from the child's run.json, not from its lines."""
    import json

    proc = matrix(
        "-q",
        "--kernel",
        "stock",
        "--scenario",
        "wp-real-write",
        "--memory",
        "anon-4k",
        "--json",
        str(tmp_path / "m.json"),
        "--results-dir",
        str(tmp_path / "work"),
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [stock] = json.loads((tmp_path / "m.json").read_text())["kernels"]
    log = (tmp_path / "work").glob("stock-*/run.log")
    assert not [line for line in next(log).read_text().splitlines() if line.startswith("[vm]")]
    boot = stock["boot"]
    assert boot["outcome"] == "OK" and os.path.isdir(boot["run_dir"]) and boot["timings"]["launch_to_init"] > 0
    assert os.path.isfile(os.path.join(boot["run_dir"], "console.log")) and boot["console_excerpt"]
    assert os.path.isfile(boot["console_log"])  # the copy kept in the kernel's results folder


@pytest.mark.vm
@pytest.mark.host_state  # holds the real kernel cache's in-use lock: other builds wait meanwhile
@root
def test_the_host_answers_while_a_recipe_still_builds(tmp_path):
    """A matrix queues each kernel as soon as it is built: while the stock recipe's build waits (here for
    the kernel cache's lock, held as `kernel clean` holds it), the host has already run and answered."""
    import threading
    import time

    from uffdprobe.kbuild import cache

    root_dir = cache.default_root()
    held = cache.exclusive_use(root_dir)
    if held is None:
        pytest.skip(f"a build or unpack is using {root_dir} now")
    lines: list = []
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uffdprobe", "matrix", "--kernel", "host", "--kernel", "stock"]
            + ["--scenario", "cow-leak", "--memory", "anon-4k", "--results-dir", str(tmp_path / "m")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while not any("[1/2] host: done" in line for line in lines) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.2)
        time.sleep(3)  # stock's build still waits for the lock: it neither boots nor ends the matrix
        said = "".join(lines)
        assert "[1/2] host: done" in said and "1 PASS" in said, said
        assert "[2/2] stock: booting" not in said and proc.poll() is None, said
    finally:
        os.close(held)
    try:
        assert proc.wait(timeout=600) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    said = "".join(lines)
    assert said.index("[1/2] host: done") < said.index("[2/2] stock: booting"), said
    assert "waiting for `kernel clean`" in said and "cell(s) on 2 kernel(s)" in said, said
