# SPDX-License-Identifier: GPL-2.0-only
"""The output formats on real host runs: JSON per its schema, JUnit per junit-10.xsd, KTAP through the
kernel's own kunit.py parser, evidence as data (hex addresses, flag names, message objects)."""

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import formats
from formats import kunit_parse, valid_json, valid_junit
from lxml import etree

from uffdprobe.kbuild.source import DEFAULT_TARBALL
from uffdprobe.scenarios import memkinds
from uffdprobe.scenarios.registry import SCENARIOS as SCENARIO_TABLE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp scenarios need root here")
no_kunit = pytest.mark.skipif(
    not Path(DEFAULT_TARBALL).is_file(),
    reason="no linux-source-6.1 tarball to unpack the kernel's kunit.py from (apt-get install linux-source-6.1)",
)
#: selftest-self-deadlock HANGs for real on every run; wp-real-write and cow-leak PASS (on anon-4k and THP;
#: cow-leak's anon-swap SKIPs where there is no swap).
SCENARIOS = ["selftest-self-deadlock", "wp-real-write", "cow-leak"]


def uffdprobe(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "uffdprobe", *args], capture_output=True, text=True, timeout=timeout)


def counts(summary: str) -> dict:
    return {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", summary)}


@pytest.fixture(scope="module")
def _started(tmp_path_factory):
    """host_run's run and host_matrix's matrix, started at once: two real runs that mostly wait on the hang bound,
    each with its own files, side by side; each fixture below waits for its own."""
    run_dir, matrix_dir = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("matrix")
    files = {k: matrix_dir / f"m.{k}" for k in ("json", "junit", "ktap")}
    with ThreadPoolExecutor(2) as pool:
        run = pool.submit(uffdprobe, "run", "--ktap", "-", "--runs", "2", "--json", str(run_dir / "r.json"), *SCENARIOS)
        matrix = pool.submit(
            uffdprobe,
            "matrix",
            "--kernel",
            "host",
            *[a for s in SCENARIOS for a in ("--scenario", s)],
            "--runs",
            "2",
            "--expect",
            "host:selftest-self-deadlock=HANG",
            "--expect",
            "host:wp-real-write=HANG",
            "--results-dir",
            str(matrix_dir / "work"),
            *[a for k, f in files.items() for a in (f"--{k}", str(f))],
        )
        yield {
            "run": lambda: {"proc": run.result(), "json": run_dir / "r.json", "dir": run_dir},
            "matrix": lambda: {"proc": matrix.result(), **files, "work": matrix_dir / "work"},
        }


@pytest.fixture(scope="module")
def host_run(_started):
    """`run --ktap --json --runs 2` once: stdout is KTAP, streamed."""
    return _started["run"]()


def test_run_json_is_data_per_schema(host_run):
    data = valid_json(host_run["json"], "results")
    assert data["schema_version"] == 1 and data["uffdprobe_version"] and data["argv"][1:3] == ["run", "--ktap"]
    hang = next(r for r in data["results"] if r["verdict"] == "HANG")
    [msg] = hang["evidence"]["hang"]["pending_uffd_messages"]
    assert msg["event"] == "pagefault" and re.fullmatch(r"0x[0-9a-f]+", msg["address"])
    assert set(msg["flags"]) == {"WRITE", "WP"} and msg["ptid"] == 0
    write = next(r for r in data["results"] if r["scenario"] == "wp-real-write" and r["verdict"] == "PASS")
    assert set(write["evidence"]["flags"]) == {"WRITE", "WP"}
    assert write["evidence"]["messages"][0]["address"].startswith("0x")
    assert "PageFault(" not in host_run["json"].read_text()


@no_kunit
def test_run_ktap_parsed_by_kunit(host_run, tmp_path):
    proc = host_run["proc"]
    assert proc.returncode == 1, proc.stderr  # the HANGs
    text = proc.stdout
    results = valid_json(host_run["json"], "results")["results"]
    names = re.findall(r"^\s*(?:not )?ok \d+ (\S+)", text, re.M)
    assert len(names) == len(set(names))  # unique under --runs
    assert "selftest-self-deadlock.anon-4k.run2" in names and "wp-real-write.run1" in names
    parsed = kunit_parse(text, tmp_path)
    got = counts(parsed["summary"])
    hangs = sum(r["verdict"] == "HANG" for r in results)
    assert hangs == 2
    skips = sum(r["verdict"] == "SKIP" for r in results)  # cow-leak on anon-swap where there is no swap
    assert got["passed"] == len(results) - hangs - skips and got["failed"] == hangs, parsed["proc"].stdout
    assert got.get("skipped", 0) == skips
    assert "errors" not in got or got["errors"] == 0
    # the evidence of the failed tests survives the parser (it prints a failed test's log)
    for line in (
        "# wchan: handle_userfault",
        "# state: S",
        "# stack: handle_userfault",
        "# pending_uffd_messages: pagefault address=0x",
        "flags=WRITE|WP",
        "# rescue: unprotect",
    ):
        assert line in parsed["proc"].stdout, line


def test_run_ktap_is_streamed(tmp_path):
    """Each result line is on stdout before the run ends: read it while the HANG scenario still runs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "--ktap",
            "-",
            "cow-leak",
            "selftest-self-deadlock",
            "--memory",
            "anon-4k",
            "--hang-timeout",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line.rstrip())
            if "ok 1 cow-leak.anon-4k" in line:
                break
        assert proc.poll() is None, "the run ended before its first result line was read"
    finally:
        proc.wait(60)
    assert seen[:2] == ["KTAP version 1", "1..1"]


@pytest.fixture(scope="module")
def host_matrix(_started):
    """A host matrix with a declared HANG (met) and a declared HANG that does not happen (FIXED)."""
    return _started["matrix"]()


def test_matrix_json_per_schema(host_matrix):
    assert host_matrix["proc"].returncode == 7, host_matrix["proc"].stderr  # wp-real-write: FIXED
    data = valid_json(host_matrix["json"], "matrix")
    assert data["format"] == "uffdprobe.matrix" and "--junit" in data["argv"]
    per_kernel = list(host_matrix["work"].glob("*/results.json"))
    assert per_kernel
    for path in per_kernel:
        valid_json(path, "results")
    assert valid_json(host_matrix["work"] / "matrix.json", "matrix")["cells"] == data["cells"]


def test_matrix_junit_per_xsd(host_matrix):
    root = valid_junit(host_matrix["junit"])
    assert root.get("skipped") is None
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "host" and suite.get("timestamp")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["kernel.release"] == os.uname().release
    assert float(suite.get("time")) >= float(props["boot.seconds"]) > 0  # the whole kernel run
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    for case in cases.values():
        kernel, scenario = case.get("classname").rsplit(".", 1)  # how Jenkins splits it
        assert kernel == "host" and case.get("name").startswith(scenario + "[")
        assert case.find("properties") is None
    hang = cases["selftest-self-deadlock[anon-4k]"]
    assert hang.find("skipped").get("type") == "expected-failure"
    out = hang.find("system-out").text
    assert "wchan: handle_userfault" in out and "pending_uffd_messages: pagefault address=0x" in out
    fixed = cases["wp-real-write[anon-4k]"]
    assert fixed.find("failure").get("type") == "FIXED"
    # a plain SCENARIO declaration holds for every memory kind: the declared HANG that does not happen fails,
    # FIXED where the cell ran, UNEXPECTED (SKIP) where this host cannot offer the kind (hugetlb without free
    # huge pages); an undeclared cell of such a kind is skipped (cow-leak on anon-swap without swap)
    for memory in SCENARIO_TABLE["wp-real-write"].memory:
        want = "UNEXPECTED" if memkinds.unavailable(memory) else "FIXED"
        assert cases[f"wp-real-write[{memory}]"].find("failure").get("type") == want, memory
    unavailable = [
        n
        for n, c in cases.items()
        if c.find("skipped") is not None and c.find("skipped").get("type") != "expected-failure"
    ]
    assert int(root.get("failures")) == len(SCENARIO_TABLE["wp-real-write"].memory)
    assert int(suite.get("skipped")) == 1 + len(unavailable)


@no_kunit
def test_matrix_ktap_parsed_by_kunit(host_matrix, tmp_path):
    text = host_matrix["ktap"].read_text()
    assert not (host_matrix["ktap"].parent / "m.ktap.partial").exists()
    parsed = kunit_parse(text, tmp_path)
    got = counts(parsed["summary"])
    cells = valid_json(host_matrix["json"], "matrix")["cells"]
    runs = sum(c["runs"] for c in cells)
    # the declared HANGs are XFAIL (ok); wp-real-write's declaration holds for every memory kind, so its
    # two runs on each kind it ran on are FIXED and fail
    # (and where this host cannot offer a kind, the declared HANG's SKIP fails too)
    fixed = sum(c["runs"] for c in cells if c["scenario"] == "wp-real-write")
    skipped = sum(c["runs"] for c in cells if c["verdict"] == "SKIP" and c["scenario"] != "wp-real-write")
    assert (got["passed"], got["failed"], got.get("skipped", 0)) == (runs - fixed - skipped, fixed, skipped), parsed[
        "proc"
    ].stdout
    assert "# XFAIL declared HANG" in text and "# wchan: handle_userfault" in text
    assert text.splitlines()[-1] == "not ok 1 host"


@pytest.mark.vm
@pytest.mark.timeout(1800)
@no_kunit
def test_booted_run_ktap_streams_and_parses(tmp_path):
    """`run --kernel stock --ktap`: the kernel named in the header, result lines while the guest runs
    (relayed from its verdict stream), the kernel's release once known, kunit.py counts right."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "--kernel",
            "stock",
            "--ktap",
            "-",
            "--runs",
            "2",
            "cow-leak",
            "selftest-self-deadlock",
            "--memory",
            "anon-4k",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "ok 1 cow-leak.anon-4k.run1" in line:
                assert proc.poll() is None  # printed while the guest still runs
        err = proc.stderr.read()
    finally:
        proc.wait(120)
    assert proc.returncode == 1, err[-3000:]  # the self-deadlock HANGs
    text = "\n".join(lines) + "\n"
    assert "  # Subtest: stock" in lines and any(ln.startswith("  # kernel: release=6.1.") for ln in lines)
    parsed = kunit_parse(text, tmp_path)
    assert counts(parsed["summary"]) == {"passed": 2, "failed": 2}, parsed["proc"].stdout
    assert "# wchan: handle_userfault" in parsed["proc"].stdout


def test_junit_classname_of_a_kernel_given_by_path(host_matrix, tmp_path):
    """A kernel labelled by its file path (dots in the name): the classname holds the file name with its
    dots made '_', so Jenkins' split at the last dot still gives kernel -> scenario."""
    from uffdprobe.results import junit
    from uffdprobe.results.matrix import Matrix

    data = valid_json(host_matrix["json"], "matrix")
    label = "/srv/kernels/v5.8.1/vmlinuz-5.8.1"
    for k in data["kernels"]:
        k["label"] = label
    for c in data["cells"]:
        c["kernel"] = label
    out = tmp_path / "path.xml"
    out.write_text(junit.to_xml(Matrix.from_dict(data)))
    [suite] = valid_junit(out).findall("testsuite")
    assert suite.get("name") == label
    for case in suite.findall("testcase"):
        kernel, scenario = case.get("classname").rsplit(".", 1)
        assert kernel == "vmlinuz-5_8_1" and case.get("name").startswith(scenario + "[")


@pytest.mark.parametrize(
    "xml",
    [
        '<testsuites skipped="1"/>',
        '<testsuites><testsuite name="k" tests="1" failures="0" errors="0"><testcase name="x"><properties/>'
        '</testcase></testsuite></testsuites>',
        '<testsuites><testsuite tests="1" failures="0" errors="0"/></testsuites>',
        '<testsuites><testsuite name="k" tests="1" failures="0" errors="0" time="1 s"/></testsuites>',
    ],
    ids=["skipped on testsuites", "properties in a testcase", "suite without a name", "time not a number"],
)
def test_the_junit_schema_refuses_what_junit_10_refuses(xml):
    schema = etree.XMLSchema(etree.parse(str(formats.JUNIT_XSD)))
    assert not schema.validate(etree.fromstring(xml))
