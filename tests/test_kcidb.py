# SPDX-License-Identifier: GPL-2.0-only
"""KCIDB output of a real matrix, checked with kcidb-io's own validator: model-5.8's umapsort HANG, its
declared LEAK (an incident of a known issue), a kernel that does not boot (BOOT_FAIL), the kernel's own
mm selftest rows; and the results folder, moved elsewhere, still holds every file the report links."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from uffdprobe.kbuild import build as kbuild, recipes
from uffdprobe.results import kcidb

kcidb_io = pytest.importorskip("kcidb_io", reason="pip install 'uffdprobe[test]' (kcidb-io)")

pytestmark = pytest.mark.timeout(3600)  # may build model-5.8 and the selftests cold
URL = "https://ci.example.org/job/42/artifacts"
SELFTEST = "gup_longterm"


@pytest.fixture(scope="module")
def kcidb_matrix(tmp_path_factory):
    """model-5.8 and a truncated copy of its bzImage, two scenarios and one selftest, --kcidb written."""
    top = tmp_path_factory.mktemp("kcidb")
    built = kbuild.resolve_kernel("model-5.8")
    broken = top / "bzImage-truncated"
    broken.write_bytes(built.bzimage.read_bytes()[:300_000])
    work, report = top / "results", top / "results" / "kcidb.json"
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            "model-5.8",
            "--kernel",
            f"broken={broken}",
            "--scenario",
            "wp-gup-vmsplice",
            "--scenario",
            "cow-leak-reverse",
            "--memory",
            "anon-4k",
            "--kselftest",
            SELFTEST,
            "--results-dir",
            str(work),
            "--json",
            str(work / "out.json"),
            "--junit",
            str(work / "matrix.xml"),
            "--html",
            str(work / "matrix.html"),
            "--ktap",
            str(work / "matrix.ktap"),
            "--kcidb",
            str(report),
            "--origin",
            "uffdprobe_test",
            "--kcidb-url",
            URL,
        ],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert report.exists(), proc.stderr[-3000:]
    return {
        "top": top,
        "work": work,
        "proc": proc,
        "kcidb": json.loads(report.read_text()),
        "matrix": json.loads((work / "out.json").read_text()),
    }


def _tests(data: dict, build_id: str) -> dict:
    return {t["path"]: t for t in data["tests"] if t["build_id"] == build_id}


@pytest.mark.vm
@pytest.mark.build
def test_kcidb_report_validates_and_says_what_each_kernel_did(kcidb_matrix):
    data, m = kcidb_matrix["kcidb"], kcidb_matrix["matrix"]
    kcidb_io.schema.V5_3.validate_exactly(data)  # the package's own validator, URI formats checked
    assert all(
        obj["id"].startswith("uffdprobe_test:")
        for kind in ("checkouts", "builds", "tests", "issues", "incidents")
        for obj in data.get(kind, [])
    )
    # every verdict of every cell is a test, and each booted kernel has its boot test
    runs = sum(len(c["results"]) for c in m["cells"])
    assert len(data["tests"]) == runs + len(m["kernels"])
    assert len({t["id"] for t in data["tests"]}) == len(data["tests"])

    model = next(b for b in data["builds"] if b["comment"] == "model-5.8")
    checkout = next(c for c in data["checkouts"] if c["id"] == model["checkout_id"])
    recipe = recipes.load("model-5.8")
    series = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in recipe.patches]
    assert checkout["patchset_hash"] == hashlib.sha256("".join(h + "\n" for h in series).encode()).hexdigest()
    assert checkout["misc"]["source"]["name"] == "linux-source-6.1.tar.xz"
    assert [p["subject"] for p in checkout["misc"]["patches"]][-1].endswith("break COW for every GUP on a COW mapping")
    assert model["status"] == "PASS" and model["compiler"].startswith("gcc")
    assert model["log_url"].startswith(URL) and model["config_url"].startswith(URL)

    tests = _tests(data, model["id"])
    assert tests["uffdprobe.boot"]["status"] == "PASS"
    hang = tests["uffdprobe.wp-gup-vmsplice.anon-4k"]
    assert (hang["status"], hang["misc"]["verdict"]) == ("FAIL", "HANG")
    assert "handle_userfault" in hang["log_excerpt"]  # the hung task's stack
    leak = tests["uffdprobe.cow-leak-reverse.anon-4k"]
    assert (leak["status"], leak["misc"]["verdict"], leak["misc"]["declared"]) == ("FAIL", "LEAK", "LEAK")
    incident = next(i for i in data["incidents"] if i["test_id"] == leak["id"])
    issue = next(i for i in data["issues"] if i["id"] == incident["issue_id"])
    assert incident["present"] and issue["culprit"]["code"] and "LEAK" in issue["comment"]
    assert any(i["test_id"] == hang["id"] and i["present"] for i in data["incidents"])  # declared HANG too
    selftest = [t for p, t in tests.items() if p.startswith(f"uffdprobe.kselftest.{SELFTEST}")]
    selftest_rows = [c for c in m["cells"] if c["kernel"] == "model-5.8" and c["scenario"].startswith(SELFTEST)]
    assert len(selftest) == len(selftest_rows) > 1
    assert {t["status"] for t in selftest} <= {"PASS", "SKIP"}

    broken = next(b for b in data["builds"] if b["comment"] == "broken")
    tests = _tests(data, broken["id"])
    assert tests["uffdprobe.boot"]["status"] == "FAIL"
    assert tests["uffdprobe.boot"]["log_url"].endswith("/console.log")
    assert {t["status"] for p, t in tests.items() if p != "uffdprobe.boot"} == {"MISS"}
    assert all(len(t.get("log_excerpt", "")) <= kcidb.EXCERPT_MAX for t in data["tests"])


@pytest.mark.vm
@pytest.mark.build
def test_moved_results_folder_holds_every_linked_file(kcidb_matrix):
    """The folder a CI job archives, moved elsewhere: every URL of the report names a file in it."""
    moved = kcidb_matrix["top"] / "archived"
    shutil.copytree(kcidb_matrix["work"], moved)
    data = kcidb_matrix["kcidb"]
    urls = [
        obj[key]
        for kind in ("builds", "tests")
        for obj in data[kind]
        for key in ("log_url", "config_url")
        if key in obj
    ]
    urls += [f["url"] for t in data["tests"] for f in t.get("output_files", [])]
    assert len(urls) > len(data["tests"])
    for url in urls:
        assert url.startswith(URL + "/"), url
        assert (moved / unquote(url[len(URL) + 1 :])).is_file(), url
    names = {Path(unquote(u)).name for u in urls}
    assert {"console.log", "run.log", "build.log", "config", "results.json"} <= names
    # JUnit, HTML and KTAP name the folder's files relative to themselves, never where the folder was
    linked = set()
    for report in ("matrix.xml", "matrix.html", "matrix.ktap"):
        text = (moved / report).read_text()
        absolute = re.findall(re.escape(str(kcidb_matrix["work"])) + r"/[^\s\"<,]+\.(?:log|txt)", text)
        assert not absolute, f"{report}: {absolute[:3]}"  # the command line in a footer may name the folder
        found = set(re.findall(r"(?<![\w/.])([\w.+-]+/[\w.+-]+\.(?:log|txt))", text))
        assert found, report
        for rel in found:
            assert (moved / rel).is_file(), f"{report}: {rel}"
        linked |= {Path(rel).name for rel in found}
    assert {"console.log", "run.log", f"kselftest-{SELFTEST}.txt"} <= linked
    assert all((folder / "kernel.json").is_file() for folder in moved.iterdir() if folder.is_dir())


def test_status_mapping_and_paths():
    """Every verdict has a KCIDB status; selftest case names become valid dot-separated paths."""
    from uffdprobe.verdicts import Verdict

    assert {kcidb.status(v.value) for v in Verdict} <= {"PASS", "FAIL", "ERROR", "MISS", "SKIP"}
    assert (
        kcidb.path_of("cow: vmsplice() before fork(), unmap in parent after fork() ... with base page", "-")
        == "uffdprobe.kselftest.cow.vmsplice_before_fork_unmap_in_parent_after_fork_with_base_page"
    )
    assert kcidb.path_of("wp-gup-odirect", "anon-thp") == "uffdprobe.wp-gup-odirect.anon-thp"
    assert kcidb.path_of("cow", "-") == "uffdprobe.kselftest.cow"
    assert len(kcidb.excerpt(["x" * 40000])) == kcidb.EXCERPT_MAX


def test_cases_whose_paths_collide_keep_distinct_ids(tmp_path):
    """Two selftest cases that differ only in punctuation share a path, never an id."""
    from uffdprobe.results.matrix import KernelRun, Matrix
    from uffdprobe.verdicts import Result, Verdict

    rows = [Result(f"cow: {name}", "-", Verdict.PASS, "ok", {"output": ["ok 1 " + name]}) for name in ("a b", "a, b")]
    data = kcidb.report(Matrix([KernelRun("k", rows, {"release": "6.1"}, {"started_at": 1.0})]), "t", tmp_path)
    kcidb_io.schema.V5_3.validate_exactly(data)
    assert [t["path"] for t in data["tests"]] == ["uffdprobe.kselftest.cow.a_b"] * 2
    assert len({t["id"] for t in data["tests"]}) == 2 and "ok 1 a, b" in data["tests"][1]["log_excerpt"]


def test_kcidb_needs_an_origin(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "matrix", "--kernel", "host", "--kcidb", str(tmp_path / "k.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--origin" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())


def test_run_on_the_host_writes_a_valid_report(tmp_path):
    """`run --kcidb` on the running kernel: one checkout, one build, a test per verdict, no boot test."""
    out = tmp_path / "results"
    out.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--results-dir",
            str(out),
            "--json",
            str(out / "results.json"),
            "--kcidb",
            str(tmp_path / "kcidb.json"),
            "--origin",
            "uffdprobe_test",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    data = json.loads((tmp_path / "kcidb.json").read_text())
    kcidb_io.schema.V5_3.validate_exactly(data)
    results = json.loads((out / "results.json").read_text())["results"]
    assert [(t["path"], t["misc"]["verdict"]) for t in data["tests"]] == [
        (kcidb.path_of(r["scenario"], r["memory"]), r["verdict"]) for r in results
    ]
    assert len(data["checkouts"]) == len(data["builds"]) == 1
    assert data["tests"][0]["output_files"] == [{"name": "results.json", "url": (out / "results.json").as_uri()}]


@pytest.mark.build
def test_a_kernel_that_does_not_build_is_a_failed_build_and_missed_tests(tmp_path):
    """A recipe whose patch does not apply (the break-cow patch alone on stock's tree): BUILD_FAIL cells,
    a FAIL build naming the patch, its boot and scenario tests MISS; the report still validates."""
    lone = recipes.load("model-5.8-break-cow").patches[-1]
    recipe = tmp_path / "lone.toml"
    recipe.write_text(
        f'name = "lone"\nsource = "{recipes.load("stock").source}"\nbase = "tinyconfig"\n'
        f'fragments = ["{recipes.load("stock").fragments[0]}"]\npatches = ["{lone}"]\n'
    )
    report = tmp_path / "kcidb.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            str(recipe),
            "--scenario",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--results-dir",
            str(tmp_path / "out"),
            "--kcidb",
            str(report),
            "--origin",
            "uffdprobe_test",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.exists(), proc.stderr[-2000:]
    data = json.loads(report.read_text())
    kcidb_io.schema.V5_3.validate_exactly(data)
    (build,) = data["builds"]
    assert build["status"] == "FAIL" and lone.name in build["log_excerpt"]
    assert {t["path"]: t["status"] for t in data["tests"]} == {
        "uffdprobe.boot": "MISS",
        "uffdprobe.cow-leak.anon-4k": "MISS",
    }
    assert data["checkouts"][0]["misc"]["source"]["name"] == "linux-source-6.1.tar.xz"
