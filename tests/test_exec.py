# SPDX-License-Identifier: GPL-2.0-only
"""`--exec`: any program under the supervisor. Host tests run real programs on the running kernel (a real
HANG in handle_userfault rescued through pidfd_getfd, a vfork D state, spinning in user space and in the
kernel, exit 3); vm tests boot stock and model-5.8 with the umapsort reproducer on an ext4 scratch disk."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from formats import valid_json, valid_junit
from uffdprobe.cli.execopts import split
from uffdprobe.results import report
from uffdprobe.supervise import workload
from uffdprobe.uffd import odirect, programs
from uffdprobe.uffd.flags import Feature
from uffdprobe.verdicts import Verdict

HERE = Path(__file__).resolve().parent
FAST = workload.ExecLimits(hang_s=1.0, stuck_s=3.0, total_s=60.0, rescue_s=10.0)


def built(name: str) -> str:
    """A test program of tests/programs/, compiled once into the cache (a guest can see it there)."""
    return str(programs.compile_c(HERE / "programs" / f"{name}.c", name))


def uffdprobe(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def results(path: Path) -> list:
    return json.loads(path.read_text())["results"]


@pytest.fixture
def odirect_dir(tmp_path):
    if not odirect.accepts_odirect(str(tmp_path)):
        pytest.skip(f"{tmp_path} does not accept O_DIRECT")
    return str(tmp_path)


def test_split_gives_the_program_everything_after_exec():
    assert split(["run", "--kernel", "k", "--exec", "--", "prog", "-x", "--exec"]) == (
        ["run", "--kernel", "k"],
        ["prog", "-x", "--exec"],
    )
    assert split(["matrix", "--exec", "prog", "--json", "f"]) == (["matrix"], ["prog", "--json", "f"])
    assert split(["boot", "k", "--", "sh", "--exec"]) == (["boot", "k", "--", "sh", "--exec"], None)
    assert split(["run", "--", "--exec"]) == (["run", "--", "--exec"], None)


@pytest.mark.root
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode,answer", [("missing", "UFFDIO_ZEROPAGE"), ("wp", "UFFDIO_WRITEPROTECT mode 0")])
def test_a_program_waiting_on_its_own_uffd_is_a_hang_and_rescued(kf, mode, answer, live_children):
    if mode == "wp" and not kf.has(Feature.PAGEFAULT_FLAG_WP):
        pytest.skip("kernel lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP")
    r = workload.run_program("selfwait", [built("uffd_selfwait"), mode], {}, FAST)
    assert r.verdict is Verdict.HANG, (r.reason, r.evidence)
    ev = r.evidence
    task = ev["hang"]["blocked_tasks"][0]
    assert task["wchan"] == "handle_userfault" or any("handle_userfault" in f for f in task["stack"])
    assert ev["userfaultfds"][0]["pending"] == 1 and ev["userfaultfds"][0]["total"] == 1
    assert ev["userfaultfds"][0]["api"].startswith("aa:")
    fault = ev["hang"]["pending_uffd_messages"][0]
    assert fault["event"] == "pagefault" and fault["address"] == ev["fault_address"]
    assert ("WP" in fault["flags"]) == (mode == "wp")
    assert any(answer in a for a in ev["rescue_actions"]), ev["rescue_actions"]
    assert ev["rescued"] is True and ev["exit"]["status"] == 0
    assert "the page holds 42" in ev["stdout"]["text"]  # it really went on after the answer
    assert r.memory == "-" and not live_children()
    valid_json(report.results_document([r]), "results")


@pytest.mark.root
@pytest.mark.timeout(60)
def test_the_reproducer_passes_on_the_running_kernel(kf, odirect_dir):
    r = workload.run_program("umapsort-repro", [str(programs.path("umapsort-repro"))], {}, FAST, cwd=odirect_dir)
    assert r.verdict is Verdict.PASS, (r.reason, r.evidence["stdout"], r.evidence["stderr"])
    assert "data intact" in r.evidence["stdout"]["text"] and "hang" not in r.evidence
    assert not os.listdir(odirect_dir), "the store was left behind"


@pytest.mark.timeout(60)
def test_a_program_exiting_3_is_fail_with_its_output():
    r = workload.run_program("three", ["sh", "-c", "echo to-stdout; echo why-it-failed >&2; exit 3"], {}, FAST)
    assert r.verdict is Verdict.FAIL and r.reason == "exited 3: why-it-failed"
    assert r.evidence["stdout"]["text"] == "to-stdout\n" and r.evidence["exit"]["status"] == 3


def test_output_is_bounded_head_and_tail(tmp_path):
    r = workload.run_program("chatty", ["sh", "-c", "seq 1 100000"], {}, workload.ExecLimits(output_bytes=1000))
    out = r.evidence["stdout"]
    assert r.verdict is Verdict.PASS and out["bytes"] == len("".join(f"{i}\n" for i in range(1, 100001)))
    assert out["text"].startswith("1\n2\n") and out["text"].endswith("99999\n100000\n")
    assert f"[... {out['cut_bytes']} bytes cut ...]" in out["text"] and out["cut_bytes"] == out["bytes"] - 1000


@pytest.mark.reliability(
    "an --exec program stuck outside userfaultfd (vfork parent in D, spinning in user space or in the kernel)",
    "STUCK with every task's state, wchan and stack, never HANG; the tree killed and reaped",
)
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv,state,where",
    [
        (["vfork_sleep", "60"], "D", "D (uninterruptible) outside handle_userfault"),
        (["sh", "-c", "while :; do :; done"], "R", "spinning in user space"),
        (["dd", "if=/dev/zero", "of=/dev/null", "bs=16M"], "R", "spinning in the kernel"),
    ],
    ids=["vfork-parent-in-D", "user-space-spin", "kernel-spin"],
)
def test_stuck_outside_userfaultfd_is_stuck_not_hang(argv, state, where, live_children):
    if argv[0] == "vfork_sleep":
        argv = [built("vfork_sleep")] + argv[1:]
    r = workload.run_program("stuck", argv, {}, FAST)
    assert r.verdict is Verdict.STUCK, (r.reason, r.evidence)
    stuck = r.evidence["stuck"]["blocked_tasks"]
    assert stuck[0]["state"] == state and where in stuck[0]["stuck"], stuck
    assert stuck[0]["wchan"] != "handle_userfault" and "hang" not in r.evidence
    assert r.evidence["exit"]["killed"] and not live_children()
    valid_json(report.results_document([r]), "results")


@pytest.mark.root
@pytest.mark.timeout(120)
def test_run_exec_on_host_reports_declares_and_exits(tmp_path):
    prog = built("uffd_selfwait")
    out = tmp_path / "r.json"
    proc = uffdprobe("run", "--hang-timeout", "1", "--json", str(out), "--exec", "--", prog, "wp")
    assert proc.returncode == 1, proc.stderr  # an undeclared HANG
    valid_json(out, "results")
    assert [r["verdict"] for r in results(out)] == ["HANG"] and results(out)[0]["scenario"] == "uffd_selfwait"
    proc = uffdprobe(
        "run",
        "--hang-timeout",
        "1",
        "--expect",
        "selfwait=HANG",
        "--exec-label",
        "selfwait",
        "--ktap",
        "-",
        "--exec",
        prog,
        "wp",
    )
    assert proc.returncode == 0, proc.stderr
    assert "not ok 1 selfwait.-" in proc.stdout and "# rescue: rescued through pidfd_getfd" in proc.stdout
    proc = uffdprobe("run", "--exec", "--", str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not an executable" in proc.stderr


# ---- real guests ----------------------------------------------------------------------------------------------


def guest_run(tmp_path, kernel, *args, timeout=600):
    out = tmp_path / f"{kernel}.json"
    proc = uffdprobe("run", "--kernel", kernel, "--accel", "tcg", "--json", str(out), *args, timeout=timeout)
    return proc, (results(out) if out.exists() else [])


@pytest.mark.vm
@pytest.mark.timeout(900)
def test_reproducer_hangs_on_model_5_8_is_rescued_and_the_boot_goes_on(tmp_path):
    proc, rs = guest_run(
        tmp_path,
        "model-5.8",
        "--scratch-fs",
        "ext4",
        "--scratch-mb",
        "256",
        "--scenario",
        "wp-gup-odirect",
        "--memory",
        "anon-4k",
        "--exec",
        "--",
        str(programs.path("umapsort-repro")),
        "2",
    )
    assert proc.returncode == 0, proc.stderr  # both HANGs are declared by the recipe
    repro, odirect_run = rs
    assert repro["scenario"] == "umapsort-repro" and repro["verdict"] == "HANG", repro["reason"]
    ev = repro["evidence"]
    task = ev["hang"]["blocked_tasks"][0]
    assert task["wchan"] == "handle_userfault" and any("get_user_pages" in f for f in task["stack"]), task
    assert task["syscall"].split()[0] == "18"  # pwrite64, from its own service thread
    assert ev["userfaultfds"][0]["pending"] >= 1 and ev["fault_address"].startswith("0x")
    assert ev["rescued"] is True and ev["exit"]["status"] == 0 and "data intact" in ev["stdout"]["text"]
    assert odirect_run["scenario"] == "wp-gup-odirect" and odirect_run["verdict"] == "HANG"
    assert odirect_run["evidence"]["odirect_target"].startswith("/tmp/uffdprobe-scratch-")  # the mounted ext4


@pytest.mark.vm
@pytest.mark.timeout(900)
def test_reproducer_passes_on_stock(tmp_path):
    proc, rs = guest_run(
        tmp_path, "stock", "--scratch-fs", "ext4", "--exec", "--", str(programs.path("umapsort-repro"))
    )
    assert proc.returncode == 0, proc.stderr
    assert [(r["scenario"], r["verdict"]) for r in rs] == [("umapsort-repro", "PASS")], rs
    assert "data intact" in rs[0]["evidence"]["stdout"]["text"]


@pytest.mark.vm
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "argv,verdict,needle",
    [
        (["sh", "-c", "echo in-the-guest; echo bad >&2; exit 3"], "FAIL", "exited 3: bad"),
        (["vfork_sleep", "300"], "STUCK", "D (uninterruptible) outside handle_userfault"),
        (["dd", "if=/dev/zero", "of=/dev/null", "bs=16M"], "STUCK", "spinning in the kernel"),
    ],
    ids=["exit-3", "vfork-D", "kernel-spin"],
)
def test_guest_fail_and_stuck_are_told_apart_from_a_hang(tmp_path, argv, verdict, needle):
    if argv[0] == "vfork_sleep":
        argv = [built("vfork_sleep")] + argv[1:]
    proc, rs = guest_run(tmp_path, "stock", "--stuck-timeout", "8", "--exec", "--", *argv)
    assert proc.returncode == 1, proc.stderr  # undeclared FAIL/STUCK are kernel-problem verdicts
    assert [r["verdict"] for r in rs] == [verdict] and needle in rs[0]["reason"], rs
    assert "hang" not in rs[0]["evidence"]


@pytest.mark.vm
@pytest.mark.timeout(1200)
def test_matrix_shows_pass_and_hang_side_by_side(tmp_path):
    """The acceptance run, as the issue words it (no --scratch-fs: a guest's --exec program gets its ext4
    scratch directory by default): stock PASS next to model-5.8 HANG (declared in its recipe: exit 0), in
    every format, the program's store on the guest's ext4."""
    repro = str(programs.path("umapsort-repro"))
    files = {k: tmp_path / f"m.{k}" for k in ("json", "xml", "html")}
    proc = uffdprobe(
        "matrix",
        "--kernel",
        "stock",
        "--kernel",
        "model-5.8",
        "--accel",
        "tcg",
        "--results-dir",
        str(tmp_path / "work"),
        "--json",
        str(files["json"]),
        "--junit",
        str(files["xml"]),
        "--html",
        str(files["html"]),
        "--exec",
        "--",
        repro,
        timeout=1100,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^umapsort-repro +PASS +HANG ok$", proc.stdout, re.M), proc.stdout
    doc = valid_json(files["json"], "matrix")
    cells = {(c["kernel"], c["scenario"], c["memory"]): c for c in doc["cells"]}
    assert cells[("stock", "umapsort-repro", "-")]["verdict"] == "PASS", cells
    hang = cells[("model-5.8", "umapsort-repro", "-")]
    assert hang["verdict"] == "HANG" and hang["expected"] == "HANG" and hang["mark"] == "expected", hang
    assert hang["results"][0]["evidence"]["rescued"] is True
    suites = valid_junit(files["xml"])
    assert suites.find(".//testcase[@classname='model-5_8.umapsort-repro']/skipped") is not None
    assert "handle_userfault" in files["html"].read_text()


@pytest.mark.root
@pytest.mark.timeout(180)
def test_scratch_fs_on_a_blank_host_device_serves_the_program_and_the_odirect_scenarios(tmp_path):
    with odirect.loop_device(64 << 20) as device:
        if device is None:
            pytest.skip("no loop device here (needs root and losetup)")
        out = tmp_path / "r.json"
        proc = uffdprobe(
            "run",
            "--odirect-target",
            device,
            "--scratch-fs",
            "ext4",
            "--json",
            str(out),
            "--scenario",
            "wp-gup-odirect",
            "--memory",
            "anon-4k",
            "--exec",
            "--",
            str(programs.path("umapsort-repro")),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        repro, scenario = results(out)
        assert repro["verdict"] == "PASS" and scenario["verdict"] == "PASS", (repro, scenario)
        where = repro["params"]["cwd"]
        assert scenario["evidence"]["odirect_target"] == where and "uffdprobe-scratch-" in where
        assert not os.path.exists(where), "the mount point was left behind"
        with open("/proc/mounts") as mounts:
            assert device not in mounts.read(), "the scratch filesystem is still mounted"
        blkid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True)
        assert blkid.stdout.strip() == "ext4"  # it really was formatted


@pytest.mark.reliability(
    "--scratch-fs with no scratch disk (the host, without a blank --odirect-target device)",
    "one line naming the fix, exit 2, nothing formatted or run",
)
def test_scratch_fs_without_a_device_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("UFFDPROBE_SCRATCH_DEV", raising=False)
    proc = uffdprobe("run", "--scratch-fs", "ext4", "--json", str(tmp_path / "r.json"), "--exec", "--", "true")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--kernel KERNEL" in proc.stderr and not (tmp_path / "r.json").exists()


@pytest.mark.vm
@pytest.mark.timeout(900)
def test_the_supervisor_outlasts_the_old_hung_task_panic(tmp_path):
    """The reproducer's service thread waits in D (TASK_UNINTERRUPTIBLE): with the guest's old 30 s hung-task
    panic, a 45 s hang limit would have been a PANIC without workload evidence. Now the kernel's detector
    sits behind the supervisor's bounds, so it is the supervisor's HANG, rescued."""
    proc, rs = guest_run(
        tmp_path,
        "model-5.8",
        "--hang-timeout",
        "45",
        "--scratch-fs",
        "ext4",
        "--exec",
        "--",
        str(programs.path("umapsort-repro")),
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["verdict"] for r in rs] == ["HANG"] and "> 45s" in rs[0]["reason"], rs
    assert rs[0]["evidence"]["hang"]["blocked_tasks"][0]["state"] == "D" and rs[0]["evidence"]["rescued"]
    console = next(
        Path(line.rsplit("console: ", 1)[1].strip())
        for line in proc.stderr.splitlines()
        if line.startswith("[vm] booting") and "console: " in line
    )
    text = console.read_text(errors="replace")
    assert "hung_task_timeout_secs=120" in text  # 2 x 45 s + 30 s: behind the supervisor
    assert "blocked for more than" not in text and "Kernel panic" not in text


def test_hung_task_backstop_moves_only_when_asked():
    from uffdprobe.vm.boot import kernel_append

    default = kernel_append(False, "9p", 170, 60)
    assert "sysctl.kernel.hung_task_timeout_secs=15" in default and "hung_task_panic=1" in default  # as before
    raised = kernel_append(False, "9p", 900, 120, hung_task_s=90)
    assert "sysctl.kernel.hung_task_timeout_secs=90" in raised and "hung_task_panic=1" in raised


# ---- slow is not HANG (issue 27): a handler that answers late is left to answer -------------------------


@pytest.mark.root
@pytest.mark.timeout(300)
@pytest.mark.reliability(
    "an --exec program whose own fault handler sleeps 3 s before each answer (past the 2 s "
    "hang limit), on the host with two CPU spinners loading the machine",
    "PASS, exit 0: slow, not HANG; the faults were answered by the program's own handler (no rescue, no EEXIST)",
)
def test_a_slow_fault_handler_is_slow_not_hung_on_the_host(tmp_path):
    load = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        out = tmp_path / "r.json"
        proc = uffdprobe("run", "--json", str(out), "--exec", "--", built("uffd_slow_handler"), "2", "3")
    finally:
        for p in load:
            p.kill()
            p.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [r] = results(out)
    assert r["verdict"] == "PASS" and "hang" not in r["evidence"], r
    assert "each answered by our own handler after 3 s" in r["evidence"]["stdout"]["text"]
    assert r["duration_s"] >= 6


def _busy_guests(count: int) -> list:
    """`count` stock guests spinning both their CPUs under TCG: the load of other guests on a CI machine."""
    from uffdprobe.kbuild import build as kbuild

    image = str(kbuild.resolve_kernel("stock", progress=False).bzimage)
    spin = "i=0; while [ $i -lt 2 ]; do (while :; do :; done) & i=$((i+1)); done; sleep 600"
    guests = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uffdprobe",
                "boot",
                "--accel",
                "tcg",
                "-q",
                "--vm-timeout",
                "900",
                image,
                "--",
                "/bin/sh",
                "-c",
                spin,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    import psutil

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # both QEMUs running before the measured run starts
        qemus = [c for g in guests for c in psutil.Process(g.pid).children(recursive=True) if "qemu" in c.name()]
        if len(qemus) >= count:
            break
        time.sleep(0.5)
    return guests


@pytest.mark.vm
@pytest.mark.timeout(900)
@pytest.mark.reliability(
    "an --exec program whose own fault handler sleeps 3 s before each answer, in a stock guest "
    "while two other guests spin both their CPUs",
    "PASS, exit 0: slow, not HANG",
)
def test_a_slow_fault_handler_is_slow_not_hung_in_a_stock_guest(tmp_path):
    load = _busy_guests(2)
    try:
        proc, rs = guest_run(tmp_path, "stock", "--exec", "--", built("uffd_slow_handler"), "2", "3")
        assert [g.poll() for g in load] == [None, None], "the loading guests ran the whole time"
    finally:
        for g in load:
            os.killpg(g.pid, signal.SIGINT)
        for g in load:
            try:
                g.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(g.pid, signal.SIGKILL)
                g.wait(timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(r["scenario"], r["verdict"]) for r in rs] == [("uffd_slow_handler", "PASS")], rs
    assert "each answered by our own handler" in rs[0]["evidence"]["stdout"]["text"]


@pytest.mark.vm
@pytest.mark.timeout(900)
def test_a_program_under_tmp_is_brought_into_the_guest(tmp_path):
    """The guest covers /tmp with its own tmpfs; a reproducer built there is copied into the run's channel
    and runs in the guest under its own row name, instead of being refused."""
    assert str(tmp_path).startswith(("/tmp/", "/var/tmp/")), tmp_path  # where pytest puts it here
    repro = tmp_path / "my-repro"
    repro.write_bytes(Path(programs.path("umapsort-repro")).read_bytes())
    repro.chmod(0o755)
    proc, rs = guest_run(
        tmp_path, "stock", "--scratch-fs", "ext4", "--results-dir", str(tmp_path / "rd"), "--exec", "--", str(repro)
    )
    assert proc.returncode == 0, proc.stderr
    assert [(r["scenario"], r["verdict"]) for r in rs] == [("my-repro", "PASS")], rs
    assert "data intact" in rs[0]["evidence"]["stdout"]["text"]
    run_dir = Path(json.loads((tmp_path / "rd" / "run.json").read_text())["run_dir"])
    assert (run_dir / "channel" / "exec" / "my-repro").read_bytes() == repro.read_bytes()
