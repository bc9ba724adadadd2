# SPDX-License-Identifier: GPL-2.0-only
"""Report paths that are not plain files (issue 27): a device node, a FIFO, a /dev/fd path or a symlink
is written the way it is, never replaced; an output that cannot be written is refused before anything
runs; two outputs naming one file are refused; two runs writing one path both end normally with one
whole file. Every case runs the real command (`python -m uffdprobe`) against real nodes of our own."""

import json
import os
import stat
import subprocess
import sys
import threading
import xml.dom.minidom

import pytest

from uffdprobe.exitcodes import Exit

SCENARIO = "wp-real-write"  # one quick host scenario: the output is what these tests look at
ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


def _uffdprobe(*argv, timeout=300, **kw):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *argv], capture_output=True, text=True, timeout=timeout, **kw
    )


def _results(text: str) -> list:
    doc = json.loads(text)
    return doc["results"] if isinstance(doc, dict) else doc


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@ROOT
@pytest.mark.reliability(
    "--json names a character device node (our own, made as /dev/null's 1:3)",
    "the JSON is written into the device; the node stays a character device 1:3, exit 0",
)
def test_json_to_a_device_node_leaves_it_a_device(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    proc = _uffdprobe("run", SCENARIO, "--json", str(node))
    assert proc.returncode == Exit.OK, proc.stderr
    st = os.lstat(node)
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temporary file beside it


@ROOT
@pytest.mark.reliability(
    "--json names a device node that refuses writes (our own /dev/full, 1:7)",
    "the write error names the node, the node stays a character device, no file made",
)
def test_json_to_a_full_device_is_an_error_naming_it(tmp_path):
    node = tmp_path / "full"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    proc = _uffdprobe("run", SCENARIO, "--json", str(node))
    assert proc.returncode == Exit.NO_SPACE, proc.stderr
    assert str(node) in proc.stderr and "Traceback" not in proc.stderr
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def _read_fifo(path, into: list) -> threading.Thread:
    def reader():
        with open(path, "rb") as f:
            into.append(f.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread


@pytest.mark.reliability(
    "--json names a FIFO with a reader", "the reader gets the whole JSON; the FIFO stays a FIFO, exit 0"
)
def test_json_into_a_fifo_reaches_its_reader(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list = []
    reader = _read_fifo(fifo, got)
    proc = _uffdprobe("run", SCENARIO, "--json", str(fifo))
    reader.join(timeout=30)
    assert proc.returncode == Exit.OK, proc.stderr
    assert [r["scenario"] for r in _results(got[0].decode())] == [SCENARIO] * len(_results(got[0].decode()))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.reliability(
    "--json names a FIFO that nobody reads when the run ends",
    "one line naming the FIFO and that no process reads it, exit 2, no hang, the FIFO kept",
)
def test_json_into_a_fifo_without_a_reader_is_one_line(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = _uffdprobe("run", SCENARIO, "--memory", "anon-4k", "--json", str(fifo), timeout=120)
    assert proc.returncode == Exit.SETUP
    said = [line for line in proc.stderr.splitlines() if line.startswith("uffdprobe:")]
    assert said == [f"uffdprobe: cannot write {fifo}: no process reads this FIFO (start its reader first)"], proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.reliability(
    "--json names a symlink to an earlier report",
    "the link stays a link; its target holds the new report whole; exit 0",
)
def test_json_through_a_symlink_keeps_the_link(tmp_path):
    real = tmp_path / "reports" / "latest.json"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "results.json"
    link.symlink_to(real)
    proc = _uffdprobe("run", SCENARIO, "--json", str(link))
    assert proc.returncode == Exit.OK, proc.stderr
    assert os.readlink(link) == str(real)
    assert _results(real.read_text())[0]["scenario"] == SCENARIO
    assert sorted(p.name for p in real.parent.iterdir()) == ["latest.json"]


@pytest.mark.reliability(
    "--json >(cmd): a /dev/fd path of a process substitution",
    "the command reads the whole JSON; exit 0, no 'FileNotFoundError'",
)
def test_json_to_a_process_substitution(tmp_path):
    out = tmp_path / "got.json"
    script = f'"{sys.executable}" -m uffdprobe run {SCENARIO} --json >(cat > "{out}"); status=$?; wait; exit $status'
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == Exit.OK, proc.stderr
    for _ in range(100):  # bash's `wait` does not wait for a process substitution before 5.1
        if out.exists() and out.stat().st_size:
            break
        threading.Event().wait(0.1)
    assert _results(out.read_text())[0]["scenario"] == SCENARIO


@pytest.mark.reliability(
    "two runs write one --json path at the same time",
    "both exit 0; the file is one whole report; no temporary file left",
)
def test_two_runs_writing_one_path(tmp_path):
    path = tmp_path / "same.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "uffdprobe", "run", SCENARIO, "--json", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [Exit.OK, Exit.OK], outs
    assert _results(path.read_text())[0]["scenario"] == SCENARIO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.json"]


@pytest.mark.reliability(
    "two host matrices write one --ktap, --json, --junit and --html set at the same time",
    "both exit 0; each file is one matrix's whole report (one KTAP header, its own "
    "results); no FILE.partial or temporary file left",
)
def test_two_matrices_writing_one_set_of_paths(tmp_path):
    names = {"--ktap": "m.ktap", "--json": "m.json", "--junit": "m.xml", "--html": "m.html"}
    argv = [sys.executable, "-m", "uffdprobe", "matrix", "--kernel", "host", "--scenario", SCENARIO, "-q"]
    for option, name in names.items():
        argv += [option, str(tmp_path / name)]
    procs = [
        subprocess.Popen(
            argv + ["--results-dir", str(tmp_path / f"run{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [Exit.OK, Exit.OK], outs
    ktap = (tmp_path / "m.ktap").read_text()
    assert ktap.count("\nKTAP version 1") + ktap.startswith("KTAP version 1") == 1, ktap
    assert ktap.splitlines()[1] == "1..1" and SCENARIO in ktap
    assert json.loads((tmp_path / "m.json").read_text())
    xml.dom.minidom.parse(str(tmp_path / "m.xml"))
    assert (tmp_path / "m.html").read_text().rstrip().endswith("</html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names.values(), "run0", "run1"])


@pytest.mark.reliability(
    "one path given to two report options (--json and --html, also through a symlink)",
    "refused before anything runs: one line naming both options, exit 2, nothing written",
)
@pytest.mark.parametrize("through_link", [False, True], ids=["same path", "a symlink to it"])
def test_one_path_for_two_outputs_is_refused(tmp_path, through_link):
    report = tmp_path / "report"
    other = report
    if through_link:
        other = tmp_path / "link"
        other.symlink_to(report)
    proc = _uffdprobe(
        "matrix",
        "--kernel",
        "host",
        "--scenario",
        SCENARIO,
        "--json",
        str(report),
        "--html",
        str(other),
        "--results-dir",
        str(tmp_path / "r"),
    )
    assert proc.returncode == Exit.USAGE
    line = _one_line(proc.stderr)
    assert "--json" in line and "--html" in line
    assert not report.exists() and not (tmp_path / "r").exists()


@pytest.mark.reliability(
    "matrix --results-dir DIR where DIR/matrix.json is an earlier matrix's",
    "the earlier matrix.json stays byte for byte; this run's goes to DIR/matrix.2.json, and stderr says so; exit 0",
)
def test_results_dir_keeps_an_earlier_matrix_json(tmp_path):
    earlier = tmp_path / "matrix.json"
    earlier.write_text('{"earlier": true}\n')
    proc = _uffdprobe("matrix", "--kernel", "host", "--scenario", SCENARIO, "--results-dir", str(tmp_path))
    assert proc.returncode == Exit.OK, proc.stderr
    assert earlier.read_text() == '{"earlier": true}\n'
    ours = tmp_path / "matrix.2.json"
    assert f"this run's is {ours}" in proc.stderr
    assert json.loads(ours.read_text())["cells"]


@pytest.mark.reliability(
    "--json names a writable file in a folder the user cannot write (as nobody)",
    "refused before anything runs: one line naming the folder, exit 2, the file untouched",
)
def test_writable_file_in_an_unwritable_folder_is_refused(nobody_python):
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="uffdprobe-outputs-")  # pytest's tmp_path is out of nobody's reach
    try:
        os.chmod(top, 0o755)
        folder = os.path.join(top, "ro")
        os.mkdir(folder, 0o755)
        report = os.path.join(folder, "r.json")
        with open(report, "w") as f:
            f.write("earlier\n")
        os.chmod(report, 0o666)
        proc = nobody_python.run(
            ["run", SCENARIO, "--json", report],
            timeout=120,
            cwd="/",
            env={"HOME": top, "XDG_CACHE_HOME": os.path.join(top, "cache")},
        )
        assert proc.returncode == Exit.USAGE, proc.stderr
        line = _one_line(proc.stderr)
        assert folder in line and "not writable" in line
        with open(report) as f:
            assert f.read() == "earlier\n"
        assert sorted(os.listdir(folder)) == ["r.json"] and "summary" not in proc.stdout
    finally:
        shutil.rmtree(top)
