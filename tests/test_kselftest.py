# SPDX-License-Identifier: GPL-2.0-only
"""The kernel's own mm selftests as a second opinion, and the anon-swap memory kind (issue 21).

Real builds (cow, gup_longterm, uffd-unit-tests from Debian's linux-source-6.12), real runs on the host
and in booted guests; what they print is parsed and checked against the programs' own totals and the
kernel's own KTAP parser (kunit.py).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from uffdprobe.kbuild import kselftest as build, recipes
from uffdprobe.results import expect
from uffdprobe.run.kernels import Target, declare, parse_expect
from uffdprobe.scenarios.memkinds import NO_MEMORY, no_swap
from uffdprobe.supervise import kselftest
from uffdprobe.verdicts import Result, Verdict
from formats import kunit_parse, valid_json, valid_junit  # tests/ is on sys.path (rootdir conftest, no package)

pytestmark = pytest.mark.timeout(3600)
no_tarball = pytest.mark.skipif(
    not build.TARBALL.is_file(), reason=f"no {build.TARBALL} (apt-get install linux-source-6.12)"
)
MODEL_57_LEAKS = (
    "cow: vmsplice() + unmap in child ... with base page",
    "cow: vmsplice() + unmap in child ... with THP (2048 kB)",
)


def uffdprobe(*args, timeout=1800):
    return subprocess.run([sys.executable, "-m", "uffdprobe", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def selftests():
    return build.ensure()


@no_tarball
@pytest.mark.build
def test_selftests_build_once_from_the_6_12_tarball_and_are_cached(selftests):
    for name in build.PROGRAMS:
        assert selftests.program(name).is_file(), name
    assert selftests.identity["source"]["name"] == "linux-source-6.12.tar.xz"
    assert re.match(r"[0-9a-f]{64}$", selftests.identity["source"]["sha256"])
    assert "gcc" in selftests.identity["compiler"]
    again = build.ensure()
    assert again.cached and again.bin == selftests.bin
    complete = json.loads((selftests.bin.parent / "complete").read_text())
    assert set(complete["sha256"]) == set(build.PROGRAMS)
    tree = Path(selftests.identity["tree"])  # the pristine tree got nothing of the build
    assert not (tree / "tools/testing/selftests/mm/local_config.h").exists()
    assert not (tree / "usr/include/linux").exists(), "make headers wrote into a private O= dir"


@no_tarball
@pytest.mark.build
@pytest.mark.parametrize("program", build.PROGRAMS)
def test_each_case_on_the_host_is_a_row_whose_counts_match_the_programs_own(selftests, program, tmp_path):
    seen = []
    results = kselftest.run(program, selftests.bin, tmp_path, {"release": "host"}, seen.append)
    assert results == seen
    run, cases = results[0], results[1:]
    assert run.scenario == program and run.memory == NO_MEMORY and run.verdict is Verdict.PASS, run.reason
    assert run.evidence["exit_status"] == 0 and Path(run.evidence["log"]).is_file()
    assert cases and all(r.scenario.startswith(program + ": ") and r.memory == NO_MEMORY for r in cases)
    assert len({r.scenario for r in cases}) == len(cases), "case names are unique"
    counts = {v: sum(r.verdict.value == v for r in cases) for v in ("PASS", "FAIL", "SKIP")}
    if program == "uffd-unit-tests":
        totals = dict(kv.split("=") for kv in re.findall(r"\w+=\d+", run.evidence["totals"]))
        assert (counts["PASS"], counts["SKIP"], counts["FAIL"]) == (
            int(totals["pass"]),
            int(totals["skip"]),
            int(totals["fail"]),
        )
    else:
        totals = dict(kv.split(":") for kv in run.evidence["totals"].split())
        assert (counts["PASS"], counts["SKIP"], counts["FAIL"]) == (
            int(totals["pass"]),
            int(totals["skip"]),
            int(totals["fail"]),
        )
        assert run.evidence["plan"] == len(cases)
    assert all(r.reason for r in cases if r.verdict is Verdict.SKIP), "every SKIP has its reason"


@no_tarball
@pytest.mark.build
def test_host_run_skips_anon_swap_without_swap_and_its_ktap_parses(tmp_path):
    """The host has no swap: anon-swap SKIPs with the probed reason; the selftest rows stream as KTAP that the
    kernel's own parser reads with the same counts."""
    if no_swap() is None:
        pytest.skip("this machine has swap on: the SKIP path is not what runs here")
    proc = uffdprobe(
        "run",
        "cow-leak",
        "--memory",
        "anon-swap",
        "--kselftest",
        "gup_longterm",
        "--ktap",
        "-",
        "--results-dir",
        str(tmp_path / "rd"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [Result.from_dict(json.loads(x)) for x in (tmp_path / "rd" / "verdicts.jsonl").read_text().splitlines()]
    swap = next(r for r in rows if r.scenario == "cow-leak")
    assert swap.memory == "anon-swap" and swap.verdict is Verdict.SKIP and "swap" in swap.reason
    assert (tmp_path / "rd" / "kselftest-gup_longterm.txt").is_file()
    parsed = kunit_parse(proc.stdout, tmp_path)
    passed = sum(r.verdict is Verdict.PASS for r in rows)
    skipped = sum(r.verdict is Verdict.SKIP for r in rows)
    assert (
        f"Ran {len(rows)} tests" in parsed["summary"]
        and f"passed: {passed}" in parsed["summary"]
        and f"skipped: {skipped}" in parsed["summary"]
    ), parsed["summary"]


def test_declarations_take_selftest_rows_with_colons_and_slashes():
    key = "cow: R/O longterm GUP pin ... with base page"
    assert expect.split_key(key) == (key, None)
    assert expect.split_key(key + "/-") == (key, "-")
    assert expect.split_key("cow-leak/anon-swap") == ("cow-leak", "anon-swap")
    recipes.check_expect({key: "FAIL", key + "/-": "FAIL", "cow": "FAIL", "cow: *": "NOT_FAIL"}, "test")
    with pytest.raises(recipes.BadInput, match="no memory kind"):
        recipes.check_expect({key + "/anon-4k": "FAIL"}, "test")
    with pytest.raises(recipes.BadInput, match="unknown scenario"):
        recipes.check_expect({"cowx: something": "FAIL"}, "test")
    assert expect.declared({key: "FAIL", "cow: *": "NOT_FAIL"}, key, "-") == "FAIL"
    assert expect.declared({key: "FAIL", "cow: *": "NOT_FAIL"}, "cow: other case", "-") == "NOT_FAIL"
    assert expect.judge("NOT_FAIL", Verdict.SKIP) == expect.EXPECTED
    assert expect.judge("NOT_FAIL", Verdict.FAIL) != expect.EXPECTED
    targets = [Target("model-5.7", given="model-5.7"), Target("stock", given="stock")]
    got = parse_expect([f"model-5.7:{key}=PASS", f"{key}=FAIL", "stock:cow=PASS"], targets)
    assert got == {"model-5.7": {key: "PASS"}, "*": {key: "FAIL"}, "stock": {"cow": "PASS"}}
    targets[0].expect = {key + "/-": "FAIL"}
    declare(targets, {"model-5.7": {key: "PASS"}})
    assert targets[0].expect == {key: "PASS"}, "SCENARIO=V replaces the recipe's SCENARIO/MEMORY ones"


def test_unknown_selftest_is_one_line_exit_2():
    proc = uffdprobe("run", "--kselftest", "cow,no/such", timeout=60)  # no program is named so
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "no/such" in proc.stderr and "cow, gup_longterm, uffd-unit-tests" in proc.stderr
    proc = uffdprobe("run", "--kselftest", "cow,nope", timeout=300)  # a name, but the tree has no such program
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "has no mm selftest nope" in proc.stderr and "gup_longterm" in proc.stderr
    proc = uffdprobe("run", "--kselftest", "uffd-unit-tests", "--kselftest", "uffd-unit-tests=all", timeout=60)
    assert proc.returncode == 2 and "more than once" in proc.stderr


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """One matrix, one boot per kernel: stock and model-5.7, both COW scenarios on every memory kind, and
    the cow selftest beside them."""
    out = tmp_path_factory.mktemp("matrix")
    proc = uffdprobe(
        "matrix",
        "--kernel",
        "stock",
        "--kernel",
        "model-5.7",
        "--scenario",
        "cow-leak",
        "--scenario",
        "cow-leak-reverse",
        "--kselftest",
        "cow",
        "--json",
        str(out / "m.json"),
        "--junit",
        str(out / "m.xml"),
        "--html",
        str(out / "m.html"),
        "--ktap",
        str(out / "m.ktap"),
    )
    return proc, out


def _cells(out: Path) -> dict:
    data = valid_json(out / "m.json", "matrix")
    return {(c["kernel"], c["scenario"], c["memory"]): c for c in data["cells"]}


@no_tarball
@pytest.mark.vm
@pytest.mark.build
def test_matrix_shows_cow_cases_beside_the_scenarios_every_cell_as_declared(matrix):
    proc, out = matrix
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cells = _cells(out)
    for kernel in ("stock", "model-5.7"):
        run = cells[(kernel, "cow", NO_MEMORY)]
        assert run["results"][0]["evidence"]["exit_status"] in (0, 1)
        cases = {s: c for (k, s, m), c in cells.items() if k == kernel and s.startswith("cow: ")}
        assert len(cases) > 50, f"{kernel}: {len(cases)} cow cases"
        for c in cells.values():
            if c["kernel"] == kernel:
                assert c["mark"] in ("expected", None), (kernel, c["scenario"], c["memory"], c["label"])
    stock = [c for (k, s, m), c in cells.items() if k == "stock" and (s == "cow" or s.startswith("cow: "))]
    assert all(c["verdict"] in ("PASS", "SKIP") for c in stock), [
        c["scenario"] for c in stock if c["verdict"] not in ("PASS", "SKIP")
    ]
    assert all(c["results"][0]["reason"] for c in stock if c["verdict"] == "SKIP")
    for case in MODEL_57_LEAKS:  # the vmsplice leak, on a base page and on a THP
        c = cells[("model-5.7", case, NO_MEMORY)]
        assert c["verdict"] == "FAIL" and c["mark"] == "expected", (case, c["label"])
        assert cells[("stock", case, NO_MEMORY)]["verdict"] == "PASS"
    assert cells[("model-5.7", "cow", NO_MEMORY)]["verdict"] == "FAIL"
    for kernel in ("stock", "model-5.7"):  # the output is evidence on the host: in the run dir and beside the verdicts
        log = Path(cells[(kernel, "cow", NO_MEMORY)]["results"][0]["evidence"]["log"])
        assert log.is_file() and "TAP version" in log.read_text(), log
        kept = list(
            Path(json.loads((out / "m.json").read_text())["kernels"][0]["boot"]["log"]).parent.parent.glob(
                f"{kernel}-*/kselftest-cow.txt"
            )
        )
        assert kept, f"{kernel}: no kselftest-cow.txt in its results folder"
    assert cells[("model-5.7", "cow-leak", "anon-4k")]["verdict"] == "LEAK"
    valid_junit(out / "m.xml")
    table = proc.stdout
    assert "cow: vmsplice() + unmap in child ... with base page" in table and "cow-leak(anon-swap)" in table
    assert "cow: vmsplice() + unmap in child ... with base page" in (out / "m.html").read_text()


@no_tarball
@pytest.mark.vm
@pytest.mark.build
def test_anon_swap_runs_where_the_guest_has_swap(matrix):
    """The guest's swap disk is on: the page really was paged out (pagemap) and both questions were asked."""
    proc, out = matrix
    cells = _cells(out)
    for kernel in ("stock", "model-5.7"):
        for scenario in ("cow-leak", "cow-leak-reverse"):
            c = cells[(kernel, scenario, "anon-swap")]
            assert c["verdict"] != "SKIP", (kernel, scenario, c["results"][0]["reason"])
            want = recipes.load(kernel).expect
            assert expect.matches(expect.declared(want, scenario, "anon-swap"), Verdict(c["verdict"]))
    swapped = [c for (k, s, m), c in cells.items() if k == "stock" and "swapped" in s and s.startswith("cow: ")]
    assert sum(c["verdict"] == "PASS" for c in swapped) > 10, "cow's swapped-out cases ran too"
    assert not [c for c in swapped if "swap" in c["results"][0]["reason"].lower()], "none skipped for want of swap"


@no_tarball
@pytest.mark.vm
@pytest.mark.build
def test_matrix_ktap_nests_cases_under_their_program_and_parses(matrix, tmp_path):
    proc, out = matrix
    text = (out / "m.ktap").read_text()
    assert "# Subtest: cow\n" in text
    parsed = kunit_parse(text, tmp_path)
    cells = _cells(out)
    assert f"Ran {len(cells)} tests" in parsed["summary"], parsed["summary"]


def test_a_recipe_lists_selftests_and_a_matrix_owes_their_run_rows(tmp_path):
    from uffdprobe.run.matrix import planned
    from uffdprobe.run.request import RunRequest, Workload
    from uffdprobe.run.kernels import check_kernels

    base = recipes.load("stock").path.read_text()
    good = tmp_path / "mine.toml"
    good.write_text(
        base.replace('patches = []', 'patches = []\nkselftest = ["cow", "uffd-unit-tests=all"]')
        .replace('source = "/usr/src', f'source = "{Path("/usr/src")}')
        .replace('"../', f'"{recipes.VM_IMAGES}/')
    )
    assert recipes.load(good).kselftest == ("cow", "uffd-unit-tests=all")
    [target] = check_kernels([str(good)])
    owed = planned(RunRequest(Workload(scenarios=("cow-leak",), kselftest=("gup_longterm",))), target)
    assert owed[-3:] == [
        ("gup_longterm", NO_MEMORY, None),
        ("cow", NO_MEMORY, None),
        ("uffd-unit-tests", NO_MEMORY, None),
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('"cow", ', '"no/such", '))
    with pytest.raises(recipes.BadInput, match="kselftest 'no/such'"):
        recipes.load(bad)


@no_tarball
@pytest.mark.vm
@pytest.mark.build
def test_booted_run_with_a_selftest_announces_every_group_it_prints(tmp_path):
    """`run --kernel stock --kselftest cow --ktap`: the KTAP plan counts the selftest's group too (one
    planner for host, guest and matrix), so the kernel's own parser reads it without a crash."""
    proc = uffdprobe(
        "run",
        "--kernel",
        "stock",
        "wp-real-write",
        "--memory",
        "anon-4k",
        "--kselftest",
        "cow",
        "--ktap",
        "-",
        "--results-dir",
        str(tmp_path / "rd"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\n  1..2\n" in proc.stdout  # wp-real-write and cow
    parsed = kunit_parse(proc.stdout, tmp_path)
    rows = (tmp_path / "rd" / "verdicts.jsonl").read_text().splitlines()
    assert "CRASHED" not in parsed["proc"].stdout and "errors" not in parsed["summary"], parsed["proc"].stdout[-2000:]
    assert f"Ran {len(rows)} tests" in parsed["summary"], parsed["summary"]


@no_tarball
@pytest.mark.vm
@pytest.mark.build
def test_a_guest_that_dies_before_its_selftest_still_gives_the_selftest_row(tmp_path):
    """A guest cut off by --vm-timeout before `cow` finished (boot alone takes longer than the bound allows
    for cow on TCG): the cow run row is filled with the boot's outcome, as every scenario row is."""
    out = tmp_path / "r.json"
    proc = uffdprobe(
        "run",
        "--kernel",
        "stock",
        "wp-real-write",
        "--memory",
        "anon-4k",
        "--kselftest",
        "cow",
        "--vm-timeout",
        "15",
        "--json",
        str(out),
    )
    assert proc.returncode == 12, proc.stderr[-2000:]  # Exit.VM_TIMEOUT
    rows = {(r["scenario"], r["memory"]): r for r in json.loads(out.read_text())["results"]}
    assert ("cow", NO_MEMORY) in rows and ("wp-real-write", "anon-4k") in rows, sorted(rows)
    cow = rows[("cow", NO_MEMORY)]
    assert cow["verdict"] == "VM_TIMEOUT" and cow["evidence"]["console_log"], cow
