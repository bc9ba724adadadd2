# SPDX-License-Identifier: GPL-2.0-only
"""Faults around a real `uffdprobe matrix` (host and the cached `stock` recipe booted under QEMU):
signals while a kernel boots, and two matrix runs at once on the one user cache."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from formats import valid_json

from uffdprobe.kbuild.cache import COMPLETE
from uffdprobe.osutil.files import sha256_file
from uffdprobe.run.engine import TERM_GRACE_S
from uffdprobe.vm import accel
from uffdprobe.vm.leftovers import vm_processes
from uffdprobe.vm.paths import cache_root

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]  # `stock` may have to be built cold
root = pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp scenarios need root here")

BOOTING = re.compile(r"^  stock \| \[vm\] booting .*; console: (\S+)$")
#: The host answers every cell PASS, or SKIP where it lacks what the kind needs (anon-swap: no swap here).
GOOD = ("PASS", "SKIP")


class MatrixProc:
    """A `uffdprobe matrix` subprocess: its stderr lines as they come, and every process ever seen under it."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uffdprobe", "matrix", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines, self.stdout = [], []  # stderr lines as (monotonic time, text)
        self.seen = {}  # pid -> (create_time, session id, command line) of every descendant sampled
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self._line), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout.append), daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _line(self, text):
        self.lines.append((time.monotonic(), text.rstrip("\n")))

    @staticmethod
    def _read(stream, sink):
        for line in stream:
            sink(line)

    def _sample(self):
        while self.proc.poll() is None:
            try:
                for p in psutil.Process(self.proc.pid).children(recursive=True):
                    try:  # sampled again each round: a child caught between fork and exec shows its
                        # parent's command line at first, QEMU's after the exec (same pid, same start time)
                        self.seen[p.pid] = (p.create_time(), os.getsid(p.pid), " ".join(p.cmdline()))
                    except (psutil.Error, OSError):
                        pass
            except psutil.Error:
                pass
            time.sleep(0.2)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        """The first stderr line matching `pattern`, waited for at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, text in list(self.lines):
                found = pattern.search(text)
                if found:
                    return found
            if self.proc.poll() is not None and not self._readers[0].is_alive():
                break
            time.sleep(0.2)
        pytest.fail(f"no line matching {pattern.pattern!r} within {timeout:g}s; stderr:\n{self.stderr[-4000:]}")

    def finish(self, timeout: float) -> int:
        """Its exit status, waited for at most `timeout` seconds (killed and reaped after that)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"matrix still running {timeout:g}s later; stderr:\n{self.stderr[-4000:]}")
        finally:
            self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for t in self._readers:
            t.join(10)

    @property
    def stderr(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def own_lines_after(self, moment: float) -> list:
        """The matrix's own stderr lines after `moment` (relayed child output starts with two spaces)."""
        return [text for at, text in self.lines if at >= moment and not text.startswith("  ")]

    def left(self) -> list:
        """Processes seen under the matrix that still run, or that share a session with one seen there."""
        sessions = {sid for _, sid, _ in self.seen.values()}
        found = []
        for p in psutil.process_iter(["pid", "create_time", "cmdline", "status"]):
            if p.pid == os.getpid() or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            ours = self.seen.get(p.pid, (None,))[0] == p.info["create_time"]
            try:
                in_session = os.getsid(p.pid) in sessions and os.getsid(p.pid) != os.getsid(0)
            except OSError:
                continue
            if ours or in_session:
                found.append((p.pid, " ".join(p.info["cmdline"] or [])[:200]))
        return found


def held_locks(pids, cache: Path = None) -> list:
    """Cache lock files (kernel builder, KVM probe) that a process of `pids`, or a dead one, still holds."""
    files = list((cache_root() / "kernels" / "locks").glob("*.lock")) + [accel._lock_file(cache)]
    inodes = {os.stat(f).st_ino: f for f in files if f.exists()}
    held = []
    for row in Path("/proc/locks").read_text().split("\n"):
        parts = row.split()
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        pid, inode = int(parts[4]), int(parts[5].rsplit(":", 1)[1])
        if inode in inodes and (pid in pids or not psutil.pid_exists(pid)):
            held.append((str(inodes[inode]), pid))
    return held


def stock_entry() -> Path:
    """The cached `stock` kernel's entry directory (resolving it is a cache read once it is built)."""
    from uffdprobe.kbuild import build as kbuild

    return kbuild.resolve_kernel("stock", progress=False).bzimage.parent


def entry_intact(entry: Path) -> bool:
    return sha256_file(entry / "bzImage") == json.loads((entry / COMPLETE).read_text())["bzimage_sha256"]


def matrix_json(path: Path) -> dict:
    return valid_json(path, "matrix")


def verdicts(data: dict) -> dict:
    return {(c["kernel"], c["scenario"], c["memory"]): c["verdict"] for c in data["cells"]}


@root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.reliability(
    "SIGINT or SIGTERM to a matrix while a kernel's VM boots",
    "exit 130 within the grace, one line, the finished kernel written, no QEMU, virtiofsd, "
    "run child or lock left, the next matrix runs",
)
def test_signal_while_a_kernel_boots(tmp_path, sig):
    stock_entry()  # built before the clock starts, if it ever has to be
    out, work = tmp_path / "m.json", tmp_path / "work"
    m = MatrixProc("--kernel", "host", "--kernel", "stock", "--json", str(out), "--results-dir", str(work))
    try:
        m.wait_for(re.compile(r"^\[1/2\] host: done"), 600)
        run_dir = Path(m.wait_for(BOOTING, 900).group(1)).parent
        deadline = time.monotonic() + 60
        while not vm_processes(ancestor=m.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert vm_processes(ancestor=m.proc.pid), "no QEMU running under the matrix"
        time.sleep(1)  # let the sampler see the QEMU and virtiofsd processes
        sent = time.monotonic()
        m.proc.send_signal(sig)
        status = m.finish(timeout=TERM_GRACE_S + 60)
        took = time.monotonic() - sent
    finally:
        m.kill()
    assert status == 130, m.stderr[-4000:]
    assert took < TERM_GRACE_S, f"{took:.1f}s to stop"  # the run child stopped its QEMU without the SIGKILL
    assert m.own_lines_after(sent) == [
        f"matrix: interrupted; 1 finished kernel(s) written (marked incomplete) to "
        f"{work / 'matrix.json'}, {out}; stopped: stock"
    ], m.stderr[-4000:]
    assert "Traceback" not in m.stderr
    for path in (out, work / "matrix.json"):
        data = matrix_json(path)
        assert [k["label"] for k in data["kernels"]] == ["host"]
        assert data["cells"] and all(c["verdict"] in GOOD for c in data["cells"]), verdicts(data)
    assert any("qemu-system" in cmd for _, _, cmd in m.seen.values())
    assert m.left() == []
    assert not vm_processes(mentioning=str(run_dir)) and not vm_processes(mentioning=str(work))
    assert not held_locks(set(m.seen) | {m.proc.pid})
    again = MatrixProc(
        "--kernel",
        "host",
        "--kernel",
        "stock",
        "--scenario",
        "wp-real-write",
        "--json",
        str(tmp_path / "again.json"),
        "--results-dir",
        str(tmp_path / "again"),
    )
    assert again.finish(timeout=1200) == 0, again.stderr[-4000:]
    again_verdicts = set(verdicts(matrix_json(tmp_path / "again.json")).values())
    assert "PASS" in again_verdicts and again_verdicts <= set(GOOD), again_verdicts  # hugetlb SKIPs on a host without
    assert again.left() == []


def socket_dirs(seen: dict) -> set:
    """virtiofsd's private socket directories, from the command lines seen."""
    return {Path(p).parent for _, _, cmd in seen.values() for p in re.findall(r"--socket-path=(\S+)", cmd)}


def strays(pids) -> list:
    """Temporary files a process of `pids` left in the user cache (their names carry the pid)."""
    cache = cache_root()
    places = [
        cache,
        cache / "initramfs",
        cache / "kernels",
        cache / "kernels" / "entries",
        cache / "kernels" / "aliases",
        cache / "debian-kernels",
    ]
    return [
        str(p)
        for d in places
        if d.is_dir()
        for p in d.iterdir()
        if re.search(r"(tmp|rm-.*-)(\d+)$", p.name) and int(re.search(r"(\d+)$", p.name).group(1)) in pids
    ]


@root
@pytest.mark.reliability(
    "two matrix runs at once on one cache",
    "both finish with the same full verdicts; run dirs, probe cache, kernel cache and temp "
    "files intact; no lock or process left",
)
def test_two_matrix_runs_at_once_on_one_cache(tmp_path):
    entry = stock_entry()
    assert entry_intact(entry)
    probe_cache = accel.cache_file().read_bytes() if accel.cache_file().exists() else None
    runs = {
        n: MatrixProc(
            "--kernel",
            "host",
            "--kernel",
            "stock",
            "--json",
            str(tmp_path / f"{n}.json"),
            "--results-dir",
            str(tmp_path / n),
        )
        for n in ("a", "b")
    }
    try:
        boots = {n: Path(m.wait_for(BOOTING, 1500).group(1)).parent for n, m in runs.items()}
        status = {n: m.finish(timeout=2400) for n, m in runs.items()}
    finally:
        for m in runs.values():
            m.kill()
    for n, m in runs.items():
        assert status[n] == 0, m.stderr[-4000:]
        assert "Traceback" not in m.stderr
    data = {n: matrix_json(tmp_path / f"{n}.json") for n in runs}
    assert data["a"]["kernels"] and data["a"]["rows"]
    for n in runs:
        assert [k["label"] for k in data[n]["kernels"]] == ["host", "stock"]
        assert matrix_json(tmp_path / n / "matrix.json") == data[n]
        assert {(c["kernel"], c["scenario"], c["memory"]) for c in data[n]["cells"]} == {
            (k, r["scenario"], r["memory"]) for k in ("host", "stock") for r in data[n]["rows"]
        }
        assert not {c["verdict"] for c in data[n]["cells"]} & {"ERROR", "VM_TIMEOUT", "PANIC", "BOOT_FAIL"}
        stock = data[n]["kernels"][1]
        assert Path(stock["boot"]["run_dir"]) == boots[n]
        assert json.loads((boots[n] / "result.json").read_text())["outcome"] == "OK"
    assert verdicts(data["a"]) == verdicts(data["b"])
    assert boots["a"] != boots["b"]
    assert (
        [k["identity"]["sha256"] for k in data["a"]["kernels"][1:]]
        == [k["identity"]["sha256"] for k in data["b"]["kernels"][1:]]
        == [sha256_file(entry / "bzImage")]
    )
    assert entry_intact(entry) and stock_entry() == entry
    if probe_cache is not None:  # a cached answer is only read
        assert accel.cache_file().read_bytes() == probe_cache
    assert accel.cached_answer() is not None
    pids = set().union(*(set(m.seen) | {m.proc.pid} for m in runs.values()))
    assert strays(pids) == []
    for m in runs.values():
        assert m.left() == []
        assert not [d for d in socket_dirs(m.seen) if d.exists()]
    for d in list(boots.values()) + [tmp_path]:
        assert not vm_processes(mentioning=str(d))
    assert not held_locks(pids)


PROBE = """
import json, sys, time
from pathlib import Path
from uffdprobe.vm.boot import probe_kvm
go = Path(sys.argv[3])
deadline = time.monotonic() + 120
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print(json.dumps(probe_kvm(sys.argv[1], cache_dir=Path(sys.argv[2]), progress=lambda t: print(t, file=sys.stderr))))
"""


@pytest.mark.reliability(
    "two runs probing KVM at once on a fresh cache",
    "one probe boot; the other waits for its answer (bounded); accel.json whole, no lock left",
)
def test_two_kvm_probes_at_once_probe_once(tmp_path):
    kernel = stock_entry() / "bzImage"
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE, str(kernel), str(cache), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        time.sleep(2)  # both importing, then waiting for the go file
        go.touch()
        outs = [p.communicate(timeout=accel.PROBE_LOCK_WAIT + 120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert [p.returncode for p in procs] == [0, 0], outs
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    if any("inconclusive" in a["reason"] for a in answers):
        pytest.skip(f"the probe boot was inconclusive here, nothing is cached: {answers}")
    assert sorted(a["cached"] for a in answers) == [False, True], answers
    assert answers[0]["accel"] == answers[1]["accel"]
    waited = [err for (_, err), a in zip(outs, answers) if a["cached"]]
    assert "waiting for the KVM probe of pid " in waited[0], outs
    assert list(json.loads(accel.cache_file(cache).read_text()).values())[0]["accel"] == answers[0]["accel"]
    assert sorted(p.name for p in cache.iterdir() if p.is_file()) == ["accel.json", "accel.lock"]
    assert not held_locks({p.pid for p in procs}, cache) and not vm_processes(mentioning=str(cache))


@root
@pytest.mark.reliability(
    "QEMU of one matrix kernel SIGKILLed from outside mid-run",
    "the matrix finishes, exit 7; the other kernel's results intact; that kernel's cells "
    "ERROR saying QEMU was killed; nothing left running",
)
def test_qemu_killed_under_a_matrix(tmp_path):
    stock_entry()
    out, work = tmp_path / "m.json", tmp_path / "work"
    m = MatrixProc("--kernel", "host", "--kernel", "stock", "--json", str(out), "--results-dir", str(work))
    try:
        run_dir = Path(m.wait_for(BOOTING, 1500).group(1)).parent
        m.wait_for(re.compile(r"^  stock \| \[vm\] .*guest init reached"), 600)
        qemus = [p for p in vm_processes(ancestor=m.proc.pid) if "qemu-system" in " ".join(p.cmdline())]
        assert len(qemus) == 1, qemus
        time.sleep(1)  # the sampler sees the whole tree
        qemus[0].send_signal(signal.SIGKILL)
        status = m.finish(timeout=600)
    finally:
        m.kill()
    assert status == 7, m.stderr[-4000:]
    assert "Traceback" not in m.stderr
    data = matrix_json(out)
    assert matrix_json(work / "matrix.json") == data
    assert [k["label"] for k in data["kernels"]] == ["host", "stock"]
    host = [c for c in data["cells"] if c["kernel"] == "host"]
    stock = [c for c in data["cells"] if c["kernel"] == "stock"]
    assert host and all(c["verdict"] in GOOD and not c["unexpected"] for c in host), verdicts(data)
    assert len(stock) == len(host)
    killed = [c for c in stock if c["verdict"] == "ERROR"]
    assert killed, verdicts(data)
    for c in killed:
        reason = c["results"][0]["reason"]
        assert "QEMU died of signal 9 (SIGKILL)" in reason and "killed from outside" in reason, reason
        assert c["unexpected"]
    assert all(c["verdict"] != "ERROR" for c in stock if c not in killed)
    assert data["kernels"][1]["boot"]["outcome"] == "VM_KILLED"
    assert data["kernels"][1]["boot"]["exit_status"] == 13
    assert m.left() == []
    assert not vm_processes(mentioning=str(run_dir)) and not vm_processes(mentioning=str(work))
    assert not [d for d in socket_dirs(m.seen) if d.exists()]
    assert not held_locks(set(m.seen) | {m.proc.pid})


@root
@pytest.mark.reliability(
    "the matrix itself SIGKILLed while a kernel's VM boots",
    "its run child and that child's QEMU stop by themselves (parent-death signal), nothing left running",
)
def test_matrix_sigkilled_takes_its_children_along(tmp_path):
    stock_entry()
    # the spin keeps the guest (and so the run child) quiet for 20 s: without the parent-death signal the
    # child would only notice the dead matrix at its next write into the closed pipe
    m = MatrixProc("--kernel", "stock", "--scenario", "selftest-kernel-spin", "--results-dir", str(tmp_path / "work"))
    try:
        m.wait_for(re.compile(r"^  stock \| \[vm\] .* guest init reached"), 900)
        assert vm_processes(ancestor=m.proc.pid), "no QEMU running under the matrix"
        time.sleep(2)  # let the sampler see the run child, QEMU and virtiofsd; the spin has begun
        m.proc.kill()
        deadline = time.monotonic() + 10
        while m.left() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        m.kill()
    assert any("qemu-system" in cmd for _, _, cmd in m.seen.values())
    assert m.left() == []
    assert not vm_processes(mentioning=str(tmp_path))
