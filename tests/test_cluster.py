# SPDX-License-Identifier: GPL-2.0-only
"""The Dask engine (`matrix --cluster`) on a real LocalCluster of worker processes, and the pytest plugin under
pytest-xdist: real boots, the same verdicts as the serial run, faults survived."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from formats import valid_junit
from test_matrix_faults import MatrixProc, matrix_json, stock_entry, verdicts
from uffdprobe.scenarios import registry
from uffdprobe.vm.leftovers import vm_processes

pytest.importorskip("distributed", reason="the cluster extra (dask[distributed]) is not installed")

root = pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp scenarios need root here")
#: Two scenarios where model-5.8 differs from stock (the forced-COW hang; the leak stays closed): few boots'
#: worth of time, still a real comparison.
SCENARIOS = ["--scenario", "wp-gup-vmsplice", "--scenario", "cow-leak"]
#: The cells one kernel owes for SCENARIOS: one per memory kind each scenario runs on.
CELLS_PER_KERNEL = sum(len(registry.SCENARIOS[name].memory) for name in SCENARIOS[1::2])
BOOTING = re.compile(r"^  (stock|model-5\.8) \| \[vm\] booting .*; console: (\S+)/console\.log$")


def matrix(*args, timeout=1500, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", "matrix", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def junit_cases(path: Path) -> dict:
    """(classname, name) -> outcome of every testcase in a JUnit file."""
    out = {}
    for case in valid_junit(path).iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        out[(case.get("classname"), case.get("name"))] = kind
    return out


@pytest.mark.reliability(
    "matrix --cluster naming an unreachable scheduler or a malformed address",
    "one line naming the address and what to start, exit 2, within the connect bound, "
    "before any build or boot, no results folder",
)
@pytest.mark.parametrize("address", ["closed-port", "not an address"])
def test_a_bad_scheduler_address_is_refused_up_front(tmp_path, address):
    spec = f"tcp://127.0.0.1:{closed_port()}" if address == "closed-port" else address
    started = time.monotonic()
    done = matrix(
        "--cluster",
        spec,
        "--kernel",
        "host",
        "--kernel",
        "stock",
        "--results-dir",
        str(tmp_path / "work"),
        "--json",
        str(tmp_path / "m.json"),
        timeout=120,
        # The documented connect bound (default 10 s), shortened: a closed port is refused at once, and dask
        # retries it until the bound, which this test need not wait out in full.
        env={"UFFDPROBE_CLUSTER_TIMEOUT": "2"},
    )
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    own = [ln for ln in done.stderr.splitlines() if ln.startswith("uffdprobe:")]
    assert len(own) == 1 and spec in own[0], done.stderr
    assert "Traceback" not in done.stderr and "building" not in done.stderr and "booting" not in done.stderr
    assert ("dask scheduler" in own[0] and "within 2s" in own[0]) if address == "closed-port" else ("local:N" in own[0])
    assert took < 60, took  # the connect bound is 2 s here; a hang would run into the timeout above
    assert not (tmp_path / "work").exists() and not (tmp_path / "m.json").exists()


@pytest.mark.reliability(
    "matrix --cluster whose workers lack QEMU (local:1 started with a PATH without it)",
    "one line naming the worker and what it lacks, with the apt-get fix, exit 2, before any "
    "build or boot; no worker process left",
)
def test_a_worker_without_qemu_is_refused_up_front(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--cluster",
            "local:1",
            "--kernel",
            "host",
            "--kernel",
            "stock",
            "--results-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    own = [ln for ln in done.stderr.splitlines() if ln.startswith("uffdprobe:")]
    assert len(own) == 1 and "lacks qemu" in own[0] and "apt-get install -y qemu-system-x86" in own[0], done.stderr
    assert "Traceback" not in done.stderr and "building" not in done.stderr
    assert not (tmp_path / "work").exists()
    assert not [p.pid for p in psutil.process_iter() if _environ(p).get("PATH") == str(tmp_path)]  # workers gone


def _environ(proc: psutil.Process) -> dict:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


@root
@pytest.mark.vm
@pytest.mark.timeout(3600)
def test_local_cluster_gives_the_serial_verdicts_cell_for_cell(tmp_path):
    """host + stock + model-5.8: the same cells, verdicts and marks, the same JUnit testcases and outcomes,
    the same exit status, serially and on local:2; the cluster's evidence paths are the client's files."""
    stock_entry()
    kernels = ["--kernel", "host", "--kernel", "stock", "--kernel", "model-5.8"]
    runs = {}
    for name, extra in (("serial", []), ("cluster", ["--cluster", "local:2"])):
        done = matrix(
            *kernels,
            *SCENARIOS,
            *extra,
            "--results-dir",
            str(tmp_path / name),
            "--json",
            str(tmp_path / f"{name}.json"),
            "--junit",
            str(tmp_path / f"{name}.xml"),
        )
        runs[name] = (done, matrix_json(tmp_path / f"{name}.json"))
    (serial, s_data), (cluster, c_data) = runs["serial"], runs["cluster"]
    assert "cluster local:2: 2 VM slot(s) on 2 worker(s)" in cluster.stderr
    assert cluster.returncode == serial.returncode, cluster.stderr[-3000:]
    assert verdicts(c_data) == verdicts(s_data)
    assert len(verdicts(c_data)) == 3 * CELLS_PER_KERNEL
    marks = {(c["kernel"], c["scenario"], c["memory"]): c.get("mark") for c in s_data["cells"]}
    assert {(c["kernel"], c["scenario"], c["memory"]): c.get("mark") for c in c_data["cells"]} == marks
    assert verdicts(c_data)[("model-5.8", "wp-gup-vmsplice", "anon-4k")] == "HANG"  # a real difference
    assert verdicts(c_data)[("stock", "wp-gup-vmsplice", "anon-4k")] == "PASS"
    assert junit_cases(tmp_path / "cluster.xml") == junit_cases(tmp_path / "serial.xml")
    for kernel in c_data["kernels"]:
        if kernel["label"] != "host":  # the boot's files are the client's copies
            for key in ("console_log", "log"):
                assert kernel["boot"][key].startswith(str(tmp_path / "cluster")), kernel["boot"]
                assert Path(kernel["boot"][key]).is_file()
    for cell in c_data["cells"]:
        for result in cell["results"]:
            assert "cluster/images" not in str(result["kernel"])  # the worker's copy is not what is reported
    assert not vm_processes(mentioning=str(tmp_path))


@root
@pytest.mark.vm
@pytest.mark.timeout(3600)
@pytest.mark.reliability(
    "a cluster worker process SIGKILLed while its kernel boots (matrix --cluster local:2)",
    "its run child and QEMU stop (parent-death signal); the kernel is retried once on another "
    "worker; the matrix completes with every cell answered, the other kernel's kept",
)
def test_a_worker_killed_during_a_boot_is_retried_elsewhere(tmp_path):
    stock_entry()
    m = MatrixProc(
        "--cluster",
        "local:2",
        "--kernel",
        "stock",
        "--kernel",
        "model-5.8",
        *SCENARIOS,
        "--results-dir",
        str(tmp_path / "work"),
        "--json",
        str(tmp_path / "m.json"),
    )
    try:
        booting = m.wait_for(re.compile(r"^  stock \| \[vm\] booting .*; console: (\S+)/console\.log$"), 900)
        first_run_dir = booting.group(1)
        child = _run_child_booting(first_run_dir, timeout=60)
        worker = child.parent()
        assert worker is not None and worker.pid != m.proc.pid
        os.kill(worker.pid, signal.SIGKILL)
        m.wait_for(re.compile(r"worker \S+ died while running this kernel; retrying on another worker"), 120)
        status = m.finish(1500)
    finally:
        m.kill()
    assert status in (0, 7), m.stderr[-4000:]
    cells = verdicts(matrix_json(tmp_path / "m.json"))
    assert len(cells) == 2 * CELLS_PER_KERNEL and "ERROR" not in cells.values(), cells
    assert cells[("stock", "wp-gup-vmsplice", "anon-4k")] == "PASS"
    assert cells[("model-5.8", "wp-gup-vmsplice", "anon-4k")] == "HANG"
    assert "attempt 2 on worker" in m.stderr
    deadline = time.monotonic() + 30
    while vm_processes(mentioning=first_run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not vm_processes(mentioning=first_run_dir), "the killed worker's QEMU still runs"
    assert m.left() == []


def _run_child_booting(run_dir_hint: str, timeout: float) -> psutil.Process:
    """The `uffdprobe run --kernel` process whose QEMU writes into that run directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for qemu in vm_processes(mentioning=run_dir_hint):
            for parent in qemu.parents():
                cmd = " ".join(parent.cmdline())
                if "uffdprobe" in cmd and " run " in f" {cmd} " and "--kernel" in cmd:
                    return parent
        time.sleep(0.2)
    pytest.fail(f"no run child with a QEMU in {run_dir_hint} within {timeout:g}s")


@root
@pytest.mark.vm
@pytest.mark.timeout(1800)
@pytest.mark.reliability(
    "Ctrl-C at the terminal (SIGINT to the whole process group, LocalCluster workers included) "
    "while matrix --cluster local:2 runs a kernel on a worker",
    "exit 130 within the grace; the worker's child stopped through the cluster and its "
    "verdicts so far written, marked incomplete; no QEMU, run child or worker process left",
)
def test_ctrl_c_on_a_cluster_matrix_leaves_no_vm(tmp_path):
    stock_entry()
    # the spin keeps stock's guest busy after its first verdicts: the interrupt lands mid-kernel
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--cluster",
            "local:2",
            "--kernel",
            "stock",
            "--scenario",
            "wp-gup-vmsplice",
            "--scenario",
            "selftest-kernel-spin",
            "--results-dir",
            str(tmp_path / "work"),
            "--json",
            str(tmp_path / "m.json"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # its own group: the SIGINT below is a terminal's Ctrl-C
    lines, seen, run_dir = [], set(), None
    readers = [
        threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True),
        threading.Thread(target=proc.stdout.read, daemon=True),
    ]
    for t in readers:
        t.start()
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None:
            found = [BOOTING.search(x.rstrip("\n")) for x in list(lines)]
            run_dir = next((f.group(2) for f in found if f), None)
            if any(re.match(r"  stock \| (\[\d+/\d+\] )?wp-gup-vmsplice ", x) and "anon-thp" in x for x in list(lines)):
                break
            time.sleep(0.2)
        assert run_dir, "".join(lines)
        seen = {(p.pid, p.create_time()) for p in psutil.Process(proc.pid).children(recursive=True)}
        assert vm_processes(mentioning=run_dir), "no QEMU running for stock"
        os.killpg(proc.pid, signal.SIGINT)
        started = time.monotonic()
        proc.wait(timeout=120)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        for t in readers:
            t.join(10)
    rest = "".join(lines)
    assert proc.returncode == 130, rest
    assert took < 60, took
    assert "matrix: interrupted" in rest and "Traceback" not in rest
    data = matrix_json(tmp_path / "m.json")
    assert data["complete"] is False
    got = verdicts(data)
    assert got[("stock", "wp-gup-vmsplice", "anon-4k")] == "PASS", got  # the verdicts so far came back
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_alive(seen) or vm_processes(mentioning=run_dir)):
        time.sleep(0.5)
    assert _alive(seen) == [] and not vm_processes(mentioning=run_dir)


def _alive(seen) -> list:
    """The processes of `seen` (pid, start time) still running."""
    left = []
    for pid, created in seen:
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                left.append((pid, " ".join(p.cmdline())[:120]))
        except psutil.Error:
            continue
    return left


XDIST_TESTS = '''
import pytest

@pytest.mark.uffd_scenario("wp-gup-vmsplice")
@pytest.mark.needs("root", "uffd-wp")
def test_vmsplice(uffd_verdict):
    uffd_verdict.check()

@pytest.mark.uffd_scenario("wp-gup-vmsplice", memory="anon-thp")
@pytest.mark.needs("thp", "uffd-wp")
def test_vmsplice_thp(uffd_verdict):
    uffd_verdict.check()

@pytest.mark.uffd_scenario("selftest-self-deadlock")
def test_self_deadlock(uffd_verdict):
    uffd_verdict.check()

@pytest.mark.uffd_scenario("cow-leak")
def test_cow_leak(uffd_verdict):
    uffd_verdict.check()

def test_release(uffd_kernel):
    assert uffd_kernel.identity["release"]
'''


@root
@pytest.mark.vm
@pytest.mark.timeout(2400)
def test_pytest_xdist_gives_the_outcomes_of_a_plain_session(tmp_path):
    """Two kernels under -n 2: the same outcomes and JUnit testcases (names without xdist's group suffix,
    evidence and kernel properties included) as without xdist; stock is booted by one worker only."""
    stock_entry()
    (tmp_path / "test_user.py").write_text(XDIST_TESTS)
    sessions = {}
    for name, extra in (("plain", []), ("xdist", ["-n", "2"])):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "test_user.py",
                "--uffd-kernel",
                "host",
                "--uffd-kernel",
                "stock",
                "--uffd-expect",
                "stock:selftest-self-deadlock=HANG",
                f"--junitxml={name}.xml",
                f"--basetemp={tmp_path / ('temp-' + name)}",
                *extra,
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        sessions[name] = done
    plain, xdist = sessions["plain"], sessions["xdist"]
    assert plain.returncode == xdist.returncode == 1, plain.stdout[-3000:] + xdist.stdout[-3000:]
    assert "bringing up nodes" in xdist.stdout and "[gw" in xdist.stdout, xdist.stdout[-2000:]  # xdist ran it
    cases = junit_cases(tmp_path / "xdist.xml")
    assert cases == junit_cases(tmp_path / "plain.xml")
    assert len(cases) == 10 and not any("@" in name for _, name in cases)
    assert cases[("test_user", "test_self_deadlock[host]")] == "failure"
    assert cases[("test_user", "test_self_deadlock[stock]")] == "skipped"  # the declared HANG: xfail
    props = {}
    for name in ("plain", "xdist"):
        suite = valid_junit(tmp_path / f"{name}.xml").find("testsuite")
        props[name] = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["xdist"].keys() == props["plain"].keys()
    assert props["xdist"]["kernel[stock].sha256"] == props["plain"]["kernel[stock].sha256"]
    evidence = [e.text for e in valid_junit(tmp_path / "xdist.xml").iter("system-out")]
    assert any("stock wp-gup-vmsplice(anon-4k): PASS" in (t or "") for t in evidence)
    # each boot gets its own work folder from tmp_path_factory: one for stock in each session
    for name in ("plain", "xdist"):
        folders = [f for f in (tmp_path / f"temp-{name}").rglob("uffdprobe-stock*") if not f.is_symlink()]
        assert len(folders) == 1, (name, folders)
