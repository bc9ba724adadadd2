# SPDX-License-Identifier: GPL-2.0-only
"""The VM runner on real kernels under real QEMU: outcomes, isolation, cleanup, KVM probe."""

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from formats import valid_json

from uffdprobe.vm import accel, distro
from uffdprobe.vm.boot import boot, probe_kvm
from uffdprobe.vm.errors import VmInputError, VmSetupError
from uffdprobe.vm.leftovers import vm_processes
from uffdprobe.vm.paths import cache_root

pytestmark = pytest.mark.vm
PY = sys.executable  # the venv's python: the guest sees the host root, so this path works there too
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cloud_deb():
    """Debian's stock 6.1 cloud kernel package, fetched with apt-get download into the user cache."""
    try:
        return distro.debian_cloud_kernel(cache_root() / "debs")
    except (VmSetupError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot get a Debian cloud kernel package: {exc}")


@pytest.fixture(scope="session")
def built_kernel():
    """A bzImage built from linux-source-6.1 by the project's builder, when one exists."""
    env = os.environ.get("UFFDPROBE_TEST_BZIMAGE")
    if env:
        return Path(env)
    found = sorted(
        (p for p in cache_root().glob("kernels/entries/*/bzImage") if p.with_name("complete").exists()),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        pytest.skip(
            "no kernel built from linux-source-6.1 yet (uffdprobe.kbuild output or "
            "UFFDPROBE_TEST_BZIMAGE); the builder lands separately"
        )
    return found[-1]


@pytest.fixture
def run_dir(tmp_path):
    """A per-test run directory; afterwards no QEMU or virtiofsd from this test may be left."""
    path = tmp_path / "run"
    yield path
    left = vm_processes(mentioning=str(path)) + vm_processes()
    assert not left, f"VM processes left behind: {[(p.pid, p.name()) for p in left]}"


def tcg_boot(kernel, argv, run_dir, **kw):
    kw.setdefault("timeout", 180)
    kw.setdefault("silence_timeout", 90)
    return boot(kernel, argv, accel="tcg", run_dir=run_dir, **kw)


@pytest.fixture(scope="module")
def cloud_tour(cloud_deb, tmp_path_factory):
    """One boot of the cloud kernel for the tests that only read what a finished guest left: its results
    file, what it could write, its network, and its exit status (7, the script's last word). Each part writes
    its own file, so one part failing leaves the others' evidence intact. No VM process may be left."""
    run_dir = tmp_path_factory.mktemp("tour") / "run"
    target = REPO / f"written-by-guest-{os.getpid()}"
    code = (
        "import json, os, platform; "
        "open(os.path.join(os.environ['UFFDPROBE_RESULTS'], 'verdicts.jsonl'), 'w')"
        ".write(json.dumps({'release': platform.release(), 'cwd': os.getcwd()}) + '\\n')"
    )
    script = f"""
        {PY} -c {shlex.quote(code)}
        mount -o remount,rw / 2>/dev/null
        for path in {target} /etc/written-by-guest-{os.getpid()}; do
            if echo x > $path; then echo "$path" >> $UFFDPROBE_RESULTS/wrote; fi
        done
        echo ok > /tmp/t && cat /tmp/t > $UFFDPROBE_RESULTS/tmp_ok
        dd if=/dev/zero of=/dev/vda bs=4096 count=16 oflag=direct 2>/dev/null && echo ok > $UFFDPROBE_RESULTS/scratch_ok
        ls /sys/class/net > $UFFDPROBE_RESULTS/net
        exit 7
    """
    result = tcg_boot(cloud_deb, ["sh", "-c", script], run_dir)
    left = vm_processes(mentioning=str(run_dir)) + vm_processes()
    assert not left, f"VM processes left behind: {[(p.pid, p.name()) for p in left]}"
    return result, run_dir, target


def test_exit_status_propagates(cloud_tour):
    result, run_dir, _ = cloud_tour
    assert (result.outcome, result.exit_status) == ("OK", 7), result.reason
    assert result.console_log.is_file() and result.console_log.parent == run_dir
    assert result.kernel_identity["version"].startswith("6.1.0-")
    assert len(result.kernel_identity["sha256"]) == 64
    # both markers can land in one 0.1 s console poll when the command is as quick as `exit 7`
    assert result.timings["launch_to_init"] <= result.timings["launch_to_command_done"]
    assert json.loads((run_dir / "result.json").read_text())["outcome"] == "OK"


def test_cli_prints_guest_output_and_returns_its_status(cloud_deb, tmp_path):
    proc = subprocess.run(
        [
            PY,
            "-m",
            "uffdprobe",
            "boot",
            "--accel",
            "tcg",
            "--results-dir",
            str(tmp_path / "run"),
            str(cloud_deb),
            "--",
            "sh",
            "-c",
            "echo hello from $(uname -r); exit 4",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.strip() == "hello from " + proc.stdout.split()[-1] and "-cloud-" in proc.stdout
    assert "guest init reached" in proc.stderr  # progress
    assert not vm_processes(mentioning=str(tmp_path))


def test_results_file_written_in_guest_arrives_on_host(cloud_tour):
    result, _, _ = cloud_tour
    assert result.outcome == "OK", result.reason
    line = json.loads((result.results_dir / "verdicts.jsonl").read_text())
    assert line == {"release": result.kernel_identity["release"], "cwd": "/tmp"}


@pytest.mark.reliability(
    'the guest writes to the host root (even after remounting it rw)',
    'refused; only the results channel and the scratch disk are writable',
)
def test_guest_cannot_write_host_root(cloud_tour):
    result, _, target = cloud_tour
    assert result.outcome == "OK", result.reason
    assert not (result.results_dir / "wrote").exists()
    assert not target.exists() and not Path(f"/etc/written-by-guest-{os.getpid()}").exists()
    assert (result.results_dir / "tmp_ok").read_text() == "ok\n"
    assert (result.results_dir / "scratch_ok").read_text() == "ok\n"


@pytest.mark.reliability('the guest looks for a network', 'only lo exists')
def test_guest_has_no_network(cloud_tour):
    result, _, _ = cloud_tour
    assert result.outcome == "OK", result.reason
    assert (result.results_dir / "net").read_text().split() == ["lo"]


@pytest.mark.reliability('the guest kernel panics (sysrq-c)', 'PANIC with the panic lines; QEMU gone')
def test_panic_is_classified_with_its_lines(cloud_deb, run_dir):
    result = tcg_boot(cloud_deb, ["sh", "-c", "echo c > /proc/sysrq-trigger; sleep 60"], run_dir)
    assert result.outcome == "PANIC"
    assert "sysrq triggered crash" in result.reason
    assert any("Kernel panic - not syncing" in line for line in result.panic_lines)
    assert any("sysrq_handle_crash" in line for line in result.panic_lines)
    assert result.exit_status is None


@pytest.mark.reliability(
    'a guest task wedged in D state', 'the hung-task detector panics before the harness limit: PANIC with stacks'
)
def test_d_state_wedge_panics_before_the_harness_limit(cloud_deb, run_dir):
    # A write to a frozen filesystem sleeps uninterruptibly; the hung-task detector must fire first.
    script = "mkfs.ext4 -q /dev/vda && mkdir /tmp/m && mount /dev/vda /tmp/m && fsfreeze -f /tmp/m && echo x > /tmp/m/f"
    result = tcg_boot(cloud_deb, ["sh", "-c", script], run_dir, timeout=170, silence_timeout=60)
    assert result.outcome == "PANIC", result.reason
    assert "hung_task" in result.reason
    assert any("blocked for more than" in line for line in result.panic_lines)
    assert any("state:D" in line for line in result.panic_lines)


@pytest.mark.reliability(
    'a kernel path that is not a kernel, a directory, or missing', 'one-line error, exit 2, no QEMU started'
)
def test_not_a_kernel_is_refused_with_usage_exit(tmp_path):
    bogus = tmp_path / "notakernel"
    bogus.write_bytes(b"\x7fELF not really a kernel" * 100)
    with pytest.raises(VmInputError, match="not an x86 kernel image"):
        boot(bogus, ["true"], accel="tcg", run_dir=tmp_path / "run")
    for kernel in (bogus, tmp_path, tmp_path / "missing"):
        proc = subprocess.run(
            [PY, "-m", "uffdprobe", "boot", "-q", "--accel", "tcg", str(kernel), "--", "true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_arguments_are_refused_before_any_qemu(cloud_deb, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "console.log").write_text("an earlier run\n")
    with pytest.raises(VmInputError, match="not empty"):
        boot(cloud_deb, ["true"], accel="tcg", run_dir=used)
    with pytest.raises(VmInputError, match="non-empty list"):
        boot(cloud_deb, "true", accel="tcg", run_dir=tmp_path / "a")
    with pytest.raises(VmInputError, match="unknown accelerator"):
        boot(cloud_deb, ["true"], accel="hvf", run_dir=tmp_path / "b")
    proc = subprocess.run([PY, "-m", "uffdprobe", "boot", str(cloud_deb)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no guest command" in proc.stderr
    assert (used / "console.log").read_text() == "an earlier run\n"


@pytest.mark.reliability('a truncated bzImage', 'BOOT_FAIL, console log kept')
def test_truncated_kernel_is_boot_fail(cloud_deb, tmp_path, run_dir):
    image = distro.unpack_kernel_deb(cloud_deb, cache_root() / distro.UNPACK_SUBDIR).image
    broken = tmp_path / "bzImage-truncated"
    broken.write_bytes(image.read_bytes()[:300_000])
    result = tcg_boot(broken, ["true"], run_dir, timeout=60, silence_timeout=30)
    assert result.outcome == "BOOT_FAIL", result.reason


@pytest.mark.reliability('a guest that stops printing', 'VM_TIMEOUT at the silence limit; QEMU killed and reaped')
def test_silent_guest_is_cut_at_the_silence_limit(cloud_deb, run_dir):
    result = tcg_boot(cloud_deb, ["sleep", "1000"], run_dir, timeout=170, silence_timeout=10)
    assert result.outcome == "VM_TIMEOUT"
    assert "no console output" in result.reason
    assert result.timings["total"] < 170
    # QEMU got the polite SIGTERM (not only the SIGKILL fallback)
    assert "terminating on signal 15" in (run_dir / "qemu.stderr").read_text()


@pytest.mark.reliability('a guest that never finishes', 'VM_TIMEOUT at the overall limit; QEMU killed and reaped')
def test_chatty_guest_is_cut_at_the_overall_limit(cloud_deb, run_dir):
    loop = "while true; do echo tick; sleep 1; done"
    result = tcg_boot(cloud_deb, ["sh", "-c", loop], run_dir, timeout=30, silence_timeout=25)
    assert result.outcome == "VM_TIMEOUT"
    assert "limit" in result.reason or "bound" in result.reason


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.reliability('SIGINT or SIGTERM while a VM runs', 'exit 130, no QEMU or virtiofsd left')
def test_signal_to_booting_process_leaves_no_qemu(cloud_deb, run_dir, sig):
    cmd = [
        PY,
        "-m",
        "uffdprobe",
        "boot",
        "--accel",
        "tcg",
        "--results-dir",
        str(run_dir),
        str(cloud_deb),
        "--",
        "sleep",
        "1000",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            log = run_dir / "console.log"
            if log.exists() and "init reached" in log.read_text(errors="replace"):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "boot ended before the signal could be sent"
        assert vm_processes(ancestor=proc.pid), "no QEMU running under the boot process"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err


def test_kvm_probe_is_bounded_and_cached(cloud_deb, tmp_path):
    cache = tmp_path / "cache"
    started = time.monotonic()
    first = probe_kvm(cloud_deb, cache_dir=cache, timeout=20, silence_timeout=8)
    elapsed = time.monotonic() - started
    assert first["accel"] in ("kvm", "tcg") and not first["cached"]
    assert elapsed < 20 + 30  # probe bound plus unpacking the package into a fresh cache
    if "inconclusive" not in first["reason"]:
        assert accel.cached_answer(cache)["accel"] == first["accel"]
        again = probe_kvm(cloud_deb, cache_dir=cache)
        assert again["cached"] and again["accel"] == first["accel"]
    assert not vm_processes()


@pytest.fixture(scope="module")
def built_exit(built_kernel, tmp_path_factory):
    """One boot of the built kernel whose command first asks the kernel for random bytes without waiting
    (a fixed hash seed keeps Python's own start from reading any), then ends with exit 5: the run
    directory and the result."""
    run_dir = tmp_path_factory.mktemp("built") / "run"
    ask = "import os; os.getrandom(16, os.GRND_NONBLOCK)"
    script = f"PYTHONHASHSEED=0 {PY} -S -c {shlex.quote(ask)} && echo ok > $UFFDPROBE_RESULTS/seeded; exit 5"
    result = tcg_boot(built_kernel, ["sh", "-c", script], run_dir)
    left = vm_processes(mentioning=str(run_dir)) + vm_processes()
    assert not left, f"VM processes left behind: {[(p.pid, p.name()) for p in left]}"
    return result, run_dir


def test_built_kernel_boots_and_runs_a_command(built_exit):
    result, _ = built_exit
    assert (result.outcome, result.exit_status) == ("OK", 5), result.reason


def test_guest_kernel_rng_is_seeded_before_init(built_exit):
    """The guest's first Python must not wait for the kernel's RNG (about 1 s of jitter entropy under
    TCG): the kernel seeds it from the CPU at boot, before init runs."""
    result, run_dir = built_exit
    assert (result.results_dir / "seeded").read_text() == "ok\n", result.reason
    console = result.console_log.read_text(errors="replace")
    assert "random: crng init done" in console
    assert console.index("random: crng init done") < console.index("uffdprobe-guest: init reached")


@pytest.mark.reliability(
    "a built kernel (no ACPI: it cannot power off) finishes its command or panics",
    "QEMU ends by itself (reboot under -no-reboot), never stopped by the harness; the exit status or the PANIC intact",
)
@pytest.mark.parametrize(
    "script,outcome,status",
    [("exit 5", "OK", 5), ("echo c > /proc/sysrq-trigger; sleep 60", "PANIC", None)],
    ids=["exit status", "panic"],
)
def test_a_built_kernel_ends_qemu_by_itself(built_kernel, request, script, outcome, status):
    if outcome == "OK":  # the same request as the boot shared with test_built_kernel_boots_and_runs_a_command
        result, run_dir = request.getfixturevalue("built_exit")
        assert script == "exit 5"
    else:
        run_dir = request.getfixturevalue("run_dir")
        result = tcg_boot(built_kernel, ["sh", "-c", script], run_dir)
    assert (result.outcome, result.exit_status) == (outcome, status), result.reason
    # QEMU says "terminating on signal" when it is stopped; ended by the guest's reboot, it says nothing
    assert "terminating on signal" not in (run_dir / "qemu.stderr").read_text()
    console = result.console_log.read_text(errors="replace")
    assert "reboot: Restarting system" in console if outcome == "OK" else "Kernel panic" in console


def _run_in_vm(kernel, results_dir, *args):
    """`uffdprobe run --kernel` as a child whose stdout (the verdict table) can be read as it streams."""
    cmd = [
        PY,
        "-m",
        "uffdprobe",
        "run",
        "--kernel",
        str(kernel),
        "--accel",
        "tcg",
        "--memory",
        "anon-4k",
        "--results-dir",
        str(results_dir),
        *args,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc, timeout=240):
    """Wait (bounded) for the child and its output; kill its session when it overstays."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _verdicts(results_dir):
    return {r["scenario"]: r for r in map(json.loads, (results_dir / "verdicts.jsonl").read_text().splitlines())}


def _next_run_works(kernel, tmp_path):
    out = tmp_path / "again"
    proc = _run_in_vm(kernel, out, "wp-gup-vmsplice")
    stdout, err = _finish(proc)
    assert proc.returncode == 0, err
    assert _verdicts(out)["wp-gup-vmsplice"]["verdict"] == "PASS"


@pytest.mark.reliability(
    'QEMU SIGKILLed from outside mid-run',
    'verdicts before it kept, the rest ERROR naming the signal, exit 13, nothing left running, next run works',
)
def test_qemu_killed_from_outside_keeps_earlier_verdicts(cloud_deb, tmp_path):
    out = tmp_path / "results"
    # the self-deadlock is judged HANG only after --hang-timeout: a minute in which QEMU gets killed
    proc = _run_in_vm(cloud_deb, out, "--hang-timeout", "60", "wp-gup-vmsplice", "selftest-self-deadlock", "cow-leak")
    try:
        line = ""
        deadline = time.monotonic() + 180
        while "wp-gup-vmsplice" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()  # the first verdict, streamed while the guest sits in the deadlock
            assert line, "the run ended before its first verdict"
        qemus = [p for p in vm_processes(ancestor=proc.pid) if "qemu" in p.name()]
        assert len(qemus) == 1, qemus
        qemus[0].send_signal(signal.SIGKILL)
    finally:
        stdout, err = _finish(proc)
    assert proc.returncode == 13, err
    assert "VM_KILLED" in err and "signal 9 (SIGKILL)" in err and "1 verdict(s) kept" in err
    got = _verdicts(out)
    assert got["wp-gup-vmsplice"]["verdict"] == "PASS"
    for cut in ("selftest-self-deadlock", "cow-leak"):
        assert got[cut]["verdict"] == "ERROR" and "did not send" in got[cut]["reason"]
    assert not vm_processes(ancestor=proc.pid) and not vm_processes(mentioning=str(tmp_path))
    _next_run_works(cloud_deb, tmp_path)


@pytest.mark.reliability(
    "the guest's results channel closed early",
    'verdicts that arrived kept, the rest ERROR '
    'naming the lost channel (the guest table is in the console log), exit 14, next run works',
)
def test_results_channel_closed_early(cloud_deb, tmp_path):
    out = tmp_path / "results"
    proc = _run_in_vm(cloud_deb, out, "wp-gup-vmsplice", "selftest-close-channel", "cow-leak")
    stdout, err = _finish(proc)
    assert proc.returncode == 14, err
    assert "CHANNEL_LOST" in err and "1 verdict(s) kept" in err
    got = _verdicts(out)
    assert got["wp-gup-vmsplice"]["verdict"] == "PASS"
    for cut in ("selftest-close-channel", "cow-leak"):
        assert got[cut]["verdict"] == "ERROR" and "results channel closed early" in got[cut]["reason"]
    console = Path(got["cow-leak"]["evidence"]["console_log"]).read_text(errors="replace")
    assert "results channel lost" in console and "cow-leak" in console  # the guest went on, saying so
    assert not vm_processes(mentioning=str(tmp_path))
    _next_run_works(cloud_deb, tmp_path)


@pytest.fixture
def small_cache(tmp_path):
    """A 160 MiB tmpfs to serve as XDG_CACHE_HOME, and a function filling it to the last byte."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small-cache"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(mnt)], check=True, timeout=30)

    def fill():
        with open(mnt / "filler", "ab") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30)


@pytest.fixture(scope="module")
def stock_bzimage():
    """The project's stock 6.1 build (from the kernel cache, else built now): a kernel booted from a path."""
    from uffdprobe.kbuild import build as kbuild

    return kbuild.resolve_kernel("stock").bzimage


def _run_on_cache(cache, kernel, out, *args):
    cmd = [
        PY,
        "-m",
        "uffdprobe",
        "run",
        "--kernel",
        str(kernel),
        "--accel",
        "tcg",
        "--memory",
        "anon-4k",
        "--results-dir",
        str(out),
        *args,
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )


@pytest.mark.reliability(
    'a run started with the cache disk full',
    'one line naming the disk and the fix, exit 6, no QEMU started; after freeing space the next run works',
)
def test_full_cache_disk_refuses_the_boot(small_cache, stock_bzimage, tmp_path):
    cache, fill = small_cache
    fill()
    proc = _run_on_cache(cache, stock_bzimage, tmp_path / "out", "wp-gup-vmsplice")
    _, err = _finish(proc, timeout=120)
    assert proc.returncode == 6, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"uffdprobe: no space left writing {cache}") and "XDG_CACHE_HOME" in last, err
    assert "booting" not in err and not vm_processes(mentioning=str(cache))
    (cache / "filler").unlink()
    proc = _run_on_cache(cache, stock_bzimage, tmp_path / "out", "wp-gup-vmsplice")
    _, err = _finish(proc)
    assert proc.returncode == 0, err
    assert _verdicts(tmp_path / "out")["wp-gup-vmsplice"]["verdict"] == "PASS"


@pytest.mark.reliability(
    'the cache disk fills while a VM runs',
    'exit 6 naming the disk; the verdicts that arrived before stay in the run directory; nothing left running',
)
def test_cache_disk_filling_mid_run(small_cache, stock_bzimage, tmp_path):
    cache, fill = small_cache
    proc = _run_on_cache(
        cache,
        stock_bzimage,
        tmp_path / "out",
        "--hang-timeout",
        "20",
        "wp-gup-vmsplice",
        "selftest-self-deadlock",
        "cow-leak",
    )
    try:
        line, deadline = "", time.monotonic() + 180
        while "wp-gup-vmsplice" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the run ended before its first verdict"
        fill()
    finally:
        _, err = _finish(proc)
    assert proc.returncode == 6, err
    assert "the disk filled while the VM ran" in err.strip().splitlines()[-1], err
    arrived = list(cache.glob("uffdprobe/runs/*/channel/results/verdicts.jsonl"))
    assert len(arrived) == 1 and "wp-gup-vmsplice" in arrived[0].read_text()
    assert not vm_processes(ancestor=proc.pid) and not vm_processes(mentioning=str(cache))


@pytest.mark.reliability(
    'THP disabled for the whole system (transparent_hugepage=never)',
    'anon-thp SKIP with the probed reason, anon-4k still runs, nothing PASS that did not run',
)
def test_thp_disabled_on_the_kernel_command_line(stock_bzimage, tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            PY,
            "-m",
            "uffdprobe",
            "run",
            "--kernel",
            str(stock_bzimage),
            "--accel",
            "tcg",
            "--append",
            "transparent_hugepage=never",
            "--json",
            str(out),
            "--memory",
            "anon-4k",
            "--memory",
            "anon-thp",
            "wp-gup-vmsplice",
            "cow-leak",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    got = {(r["scenario"], r["memory"]): r for r in valid_json(out, "results")["results"]}
    for name in ("wp-gup-vmsplice", "cow-leak"):
        assert got[(name, "anon-4k")]["verdict"] == "PASS"
        assert got[(name, "anon-thp")]["verdict"] == "SKIP"
        assert got[(name, "anon-thp")]["reason"] == "transparent hugepages disabled (enabled=never)"


@pytest.mark.reliability(
    'a matrix whose booted kernel meets a full cache disk',
    "the host kernel's verdicts kept, the booted kernel's cells ERROR naming the full disk, exit 7, no QEMU started",
)
def test_matrix_with_a_full_cache_disk_keeps_the_host(small_cache, stock_bzimage, tmp_path):
    cache, fill = small_cache
    fill()
    out = tmp_path / "matrix.json"
    proc = subprocess.run(
        [
            PY,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            "host",
            "--kernel",
            f"stock={stock_bzimage}",
            "--accel",
            "tcg",
            "--scenario",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--json",
            str(out),
            "--results-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )
    assert proc.returncode == 7, proc.stderr
    cells = {c["kernel"]: c for c in valid_json(out, "matrix")["cells"]}
    assert cells["host"]["verdict"] == "PASS"
    [booted] = cells["stock"]["results"]
    assert booted["verdict"] == "ERROR" and "exit 6" in booted["reason"] and "no space left" in booted["reason"]
    assert not vm_processes(mentioning=str(cache))
