# SPDX-License-Identifier: GPL-2.0-only
"""Kernel splats are verdicts (issue 26): the kernel log (/dev/kmsg) and taint read around every workload.

On the host (the real kernel, root here): the reader follows /dev/kmsg by sequence number, counts only
the kernel's own records (a line user space writes is LOG_USER), and every workload's evidence says
what was read; as nobody (kernel.dmesg_restrict=1 here) the evidence says the log could not be read
and why, never that it was clean. In guests: tests/splat/splat-on-request.toml is the stock recipe plus
a prctl that WARNs or BUG()s when poked (tests/splat/poke.py) and a boot parameter that WARNs from an
initcall; its cells are WARN and OOPS with the kernel's report lines, the matrix fails undeclared and
passes declared, stock answers PASS to the same pokes, and a splat outside every workload is the
'kernel-log' row.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from formats import valid_json  # tests/ is on sys.path (rootdir conftest, no package)
from uffdprobe.osutil import kmsg
from uffdprobe.scenarios.rows import KERNEL_LOG_ROW
from uffdprobe.supervise.splat import SplatWatch
from uffdprobe.uffd import programs
from uffdprobe.verdicts import Result, Verdict

HERE = Path(__file__).resolve().parent / "splat"
POKE = HERE / "poke.py"
RECIPE = HERE / "splat-on-request.toml"
POKES = ("splat-warn", "splat-oops")
LOG_USER_INFO = (1 << 3) | 6


def uffdprobe(*args, timeout=900, env=None):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def _write_kmsg(text: str) -> None:
    with open(kmsg.KMSG, "w") as f:
        f.write(f"<{LOG_USER_INFO}>{text}\n")


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="reading and writing /dev/kmsg needs root here")


@root_only
def test_the_reader_follows_the_host_kernel_log_by_sequence_number():
    """Records logged after the reader opened are read once, in order, with their sequence numbers and
    facility; a user-space line that looks like a report is no splat (only facility 0 counts)."""
    tag = uuid.uuid4().hex
    with kmsg.KernelLog(from_start=False) as log:
        assert log.readable, log.error
        log.read(kmsg.Window())  # whatever the machine logged since the open
        before = log.seq
        _write_kmsg(f"uffdprobe-test {tag}: one")
        _write_kmsg(f"uffdprobe-test {tag}: WARNING: written from user space, not a kernel report")
        window = log.read(kmsg.Window(seq_before=before))
        assert not window.kinds and not window.lines, window
        assert window.records >= 2 and window.first_seq is not None and window.last_seq >= window.first_seq + 1
        if before is not None:
            assert window.first_seq > before
        again = log.read(kmsg.Window())
        assert again.records == 0 or again.first_seq > window.last_seq


@root_only
def test_records_as_the_host_kernel_writes_them_parse():
    """From the oldest record kept, every record of the host's log parses: the sequence numbers read and
    the ones the ring buffer overwrote meanwhile account for the whole span."""
    with kmsg.KernelLog(from_start=True) as log:
        window = log.read(kmsg.Window())
    assert window.records > 0 and window.first_seq is not None, window
    assert window.last_seq - window.first_seq + 1 == window.records + window.lost, window


DATA = Path(__file__).resolve().parent / "test_data"


def _recorded(name: str) -> list:
    """A file of /dev/kmsg as a real guest printed it (dd of its records): the raw bytes of each record,
    a record being one 'PRIO,SEQ,USEC,FLAGS;TEXT' line and the dictionary lines (' KEY=VALUE') after it."""
    records: list = []
    for line in (DATA / name).read_bytes().splitlines(keepends=True):
        if line.startswith(b" ") and records:
            records[-1] += line
        else:
            records.append(line)
    return records


def test_recorded_splats_of_a_real_guest_read_into_one_window():
    """splat-on-request 6.1.192 under TCG, `splat_poke warn; splat_poke bug`: one WARN report then one
    Oops; the excerpt opens with 'cut here' and the WARN's own message, the sequence numbers run on."""
    window = kmsg.Window(seq_before=185)
    for raw in _recorded("kmsg-splat-on-request.txt"):
        record = kmsg.parse_record(raw)
        assert record is not None and record.facility == 0, raw
        window.add(record)
    assert window.kinds == ["WARN", "OOPS"], window.kinds
    assert (window.first_seq, window.last_seq, window.records) == (186, 261, 76)
    texts = [line.split("] ", 1)[1] for line in window.lines]
    assert texts[:3] == [
        "------------[ cut here ]------------",
        "uffdprobe-splat: WARN on request of pid 40",
        "WARNING: CPU: 0 PID: 40 at ../tree/kernel/sys.c:2702 __x64_sys_prctl+0x4f0/0x538",
    ]
    assert "kernel BUG at ../tree/kernel/sys.c:2709!" in texts
    assert len(texts) == 75 and window.lines_cut == 0  # all but the 9pnet line before the "cut here"
    assert window.lines[0].startswith("[    2.260097] ")


def test_a_recorded_record_with_a_dictionary_parses_to_its_text():
    (raw,) = _recorded("kmsg-dictionary-record.txt")
    assert kmsg.parse_record(raw) == kmsg.Record(
        102, 6, 628000, "pci_bus 0000:00: root bus resource [io  0x0000-0xffff]"
    )


def test_splat_kinds_are_the_kernels_report_openers():
    """The report lines the kernel prints (lib/bug.c, arch/x86 traps, KASAN, lockdep) and nothing else."""
    assert kmsg.splat_kind("WARNING: CPU: 0 PID: 71 at kernel/sys.c:2704 __do_sys_prctl+0x4a/0x6b0") == "WARN"
    assert kmsg.splat_kind("WARNING: possible circular locking dependency detected") == "WARN"
    assert kmsg.splat_kind("kernel BUG at kernel/sys.c:2710!") == "OOPS"
    assert kmsg.splat_kind("BUG: KASAN: use-after-free in handle_userfault+0x1/0x2") == "OOPS"
    assert kmsg.splat_kind("BUG: unable to handle page fault for address: 0000000000001000") == "OOPS"
    assert kmsg.splat_kind("general protection fault, probably for non-canonical address 0xdead") == "OOPS"
    assert kmsg.splat_kind("Oops: 0000 [#1] PREEMPT SMP") == "OOPS"
    for quiet in (
        "uffdprobe-splat: BUG on request of pid 5",
        "random: crng init done",
        "Run /init as init process",
        "x86/fpu: Supporting XSAVE feature 0x001",
    ):
        assert kmsg.splat_kind(quiet) is None, quiet


@root_only
def test_a_workload_with_nothing_logged_keeps_its_verdict_and_says_what_was_read():
    """A real window on the host kernel with only a user-space line in it: PASS stays PASS, and the
    evidence names the sequence numbers read and the taint before and after."""
    with SplatWatch(from_start=False) as watch:
        window = watch.start()
        _write_kmsg(f"uffdprobe-test {uuid.uuid4().hex}: a line from user space")
        r = watch.judge(Result("x", "anon-4k", Verdict.PASS, "fine"), window)
        row = watch.between_row({})
    assert r.verdict is Verdict.PASS and r.reason == "fine" and "splat" not in r.evidence
    log = r.evidence["kernel_log"]
    assert log["read"] is True and log["records"] >= 1 and log["last_seq"] >= log["first_seq"], log
    assert log["taint"]["before"] == log["taint"]["after"] == kmsg.read_taint() and log["taint"]["new"] == []
    assert row is None


@root_only
def test_a_host_run_reads_the_kernel_log_around_each_scenario(tmp_path):
    """`uffdprobe run` on the host: the poke scenarios find no splat hook (EINVAL) and are PASS, each with
    the kernel log read around it."""
    out = tmp_path / "r.json"
    proc = uffdprobe("run", "--scenarios-from", str(POKE), *POKES, "--json", str(out), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["scenario"]: r for r in valid_json(out, "results")["results"]}
    assert set(results) == set(POKES)
    for r in results.values():
        assert r["verdict"] == "PASS" and "no splat hook" in r["reason"], r
        assert r["evidence"]["kernel_log"]["read"] is True, r["evidence"]


def test_an_unreadable_kernel_log_is_said_never_clean(nobody_python):
    """As nobody, with kernel.dmesg_restrict=1, /dev/kmsg cannot be read: each workload's evidence says so
    (and why), the taint is still asked, the verdict is the workload's own."""
    if Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() != "1":
        pytest.skip("kernel.dmesg_restrict is 0 here: anyone may read /dev/kmsg")
    work = Path(tempfile.mkdtemp(prefix="uffdprobe-nobody-splat-"))  # pytest's tmp_path is root's alone
    try:
        shutil.copy(POKE, work / "poke.py")
        os.chmod(work, 0o777)
        os.chmod(work / "poke.py", 0o644)
        out = work / "r.json"
        proc = nobody_python.run(
            ["run", "--scenarios-from", str(work / "poke.py"), "splat-warn", "--json", str(out)],
            timeout=120,
            cwd=work,
            env={"HOME": str(work)},
        )
        assert out.exists(), proc.stderr
        (r,) = json.loads(out.read_text())["results"]
    finally:
        shutil.rmtree(work)
    assert r["verdict"] == "PASS", r
    log = r["evidence"]["kernel_log"]
    assert log["read"] is False and "/dev/kmsg" in log["why"] and "CAP_SYSLOG" in log["why"], log
    assert log["taint"]["after"] is not None, log


def _cells(path: Path) -> dict:
    return {(c["kernel"], c["scenario"]): c for c in valid_json(path, "matrix")["cells"]}


def _assert_warn(r: dict) -> None:
    assert r["verdict"] == "WARN", r["reason"]
    splat = r["evidence"]["splat"]
    assert splat["first"].startswith("WARNING: CPU:") and "kernel/sys.c" in splat["first"], splat
    assert any("uffdprobe-splat: WARN on request" in line for line in splat["lines"]), splat["lines"]
    assert (
        "W (WARN)" in splat["new_taint"]
        or "W (WARN)" in r["evidence"]["kernel_log"]["taint"]["new"]
        or r["evidence"]["kernel_log"]["taint"]["before"] & 512
    ), r["evidence"]["kernel_log"]
    assert r["evidence"]["own_verdict"]["verdict"] == "PASS", r["evidence"]["own_verdict"]


def _assert_oops(r: dict) -> None:
    assert r["verdict"] == "OOPS", r["reason"]
    splat = r["evidence"]["splat"]
    assert splat["first"].startswith("kernel BUG at") and "kernel/sys.c" in splat["first"], splat
    assert any("uffdprobe-splat: BUG on request" in line for line in splat["lines"]), splat["lines"]
    # the BUG killed the scenario's child before it reported: its own verdict was the supervisor's ERROR
    assert r["evidence"]["own_verdict"]["verdict"] == "ERROR", r["evidence"]["own_verdict"]


@pytest.mark.vm
def test_splats_in_a_guest_are_cells_that_fail_undeclared(tmp_path, live_children):
    """stock and splat-on-request side by side, the WARN declared for splat-on-request, the OOPS not: stock
    PASS, PASS; splat-on-request WARN (the WARNING line, marked expected) and OOPS (kernel BUG at ...,
    UNEXPECTED); the matrix exits 7, its status for a cell that is not what was declared
    (exitcodes.Exit.UNEXPECTED); no kernel-log row anywhere."""
    out = tmp_path / "m.json"
    proc = uffdprobe(
        "matrix",
        "--kernel",
        "stock",
        "--kernel",
        f"splat={RECIPE}",
        "--scenarios-from",
        str(POKE),
        *[a for s in POKES for a in ("--scenario", s)],
        "--expect",
        "splat:splat-warn=WARN",
        "--json",
        str(out),
        "--results-dir",
        str(tmp_path / "work"),
        timeout=1200,
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr[-3000:]
    cells = _cells(out)
    for scenario in POKES:
        stock = cells[("stock", scenario)]
        assert stock["verdict"] == "PASS" and "no splat hook" in stock["results"][0]["reason"], stock
        assert stock["results"][0]["evidence"]["kernel_log"]["read"] is True
    _assert_warn(cells[("splat", "splat-warn")]["results"][0])
    _assert_oops(cells[("splat", "splat-oops")]["results"][0])
    warn, oops = cells[("splat", "splat-warn")], cells[("splat", "splat-oops")]
    assert warn["expected"] == "WARN" and warn["mark"] == "expected" and not warn["unexpected"], warn["mark"]
    assert oops["mark"] == "UNEXPECTED" and oops["unexpected"], oops["mark"]
    assert "splat-oops" in proc.stdout and "UNEXPECTED" in proc.stdout
    assert not any(scenario == KERNEL_LOG_ROW for _, scenario in cells), cells.keys()
    assert not live_children()


@pytest.mark.vm
def test_an_undeclared_splat_is_exit_1_for_run(tmp_path, live_children):
    """`run --kernel` with the WARN poke and nothing declared: a kernel problem, exit 1, the UNEXPECTED line."""
    out = tmp_path / "r.json"
    proc = uffdprobe("run", "--kernel", str(RECIPE), "--scenarios-from", str(POKE), "splat-warn", "--json", str(out))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "UNEXPECTED: splat-warn[anon-4k]: nothing declared, got WARN" in proc.stdout, proc.stdout
    (r,) = valid_json(out, "results")["results"]
    _assert_warn(r)
    assert not live_children()


@pytest.mark.vm
def test_declared_splats_pass_and_a_boot_splat_is_the_kernel_log_row(tmp_path, live_children):
    """One boot of splat-on-request with uffdprobe_splat_at_boot: the WARN from an initcall is outside every
    workload, so it is the kernel-log row; an --exec program's poke is its row's WARN; a real HANG with a
    WARN while it ran stays HANG with the splat as evidence; all declared, the run exits 0."""
    out = tmp_path / "r.json"
    poker = programs.compile_c(HERE / "splat_poke.c", "splat_poke")  # into the cache, which the guest sees
    proc = uffdprobe(
        "run",
        "--kernel",
        str(RECIPE),
        "--append",
        "uffdprobe_splat_at_boot",
        "--scenarios-from",
        str(POKE),
        *POKES,
        "splat-hang",
        "--exec-label",
        "poker",
        "--expect",
        "splat-warn=WARN",
        "--expect",
        "splat-oops=OOPS",
        "--expect",
        "poker=WARN",
        "--expect",
        "splat-hang=HANG",
        "--expect",
        f"{KERNEL_LOG_ROW}=WARN",
        "--json",
        str(out),
        "--ktap",
        "-",
        "--exec",
        "--",
        str(poker),
        "warn",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {r["scenario"]: r for r in valid_json(out, "results")["results"]}
    _assert_warn(results["splat-warn"])
    _assert_oops(results["splat-oops"])
    poked = results["poker"]
    assert poked["verdict"] == "WARN" and poked["evidence"]["splat"]["first"].startswith("WARNING: CPU:"), poked
    assert poked["evidence"]["own_verdict"]["verdict"] == "PASS", poked  # exit 0: the call returned 0
    hang = results["splat-hang"]
    assert hang["verdict"] == "HANG" and hang["evidence"]["hang"]["blocked_tasks"], hang
    assert hang["evidence"]["splat"]["first"].startswith("WARNING: CPU:"), hang["evidence"]["splat"]
    assert hang["evidence"]["splat"]["verdict_kept"].startswith("HANG (already a kernel problem) over WARN")
    assert "; the kernel logged WARNING: CPU:" in hang["reason"] and "own_verdict" not in hang["evidence"]
    row = results[KERNEL_LOG_ROW]
    assert row["verdict"] == "WARN" and row["memory"] == "-", row
    assert "outside every workload (since the boot)" in row["reason"], row["reason"]
    assert any("uffdprobe-splat: WARN at boot on request" in line for line in row["evidence"]["splat"]["lines"])
    # KTAP's plan was printed before the boot: the row is said after the kernel's subtests, failing it
    assert f"# {KERNEL_LOG_ROW}.-: not ok (not in the plan)" in proc.stdout, proc.stdout[-3000:]
    assert not live_children()


def test_a_recipe_declares_the_kernel_log_row_like_a_program_row(tmp_path):
    """[expect] "kernel-log" = "WARN" loads (the test recipe itself too); the row has no memory kind."""
    from uffdprobe.kbuild import recipes
    from uffdprobe.kbuild.errors import BadInput

    assert recipes.load(RECIPE).name == "splat-on-request"
    text = (
        RECIPE.read_text()
        .replace('fragments = ["../../vm-images', f'fragments = ["{HERE}/../../vm-images')
        .replace('patches = ["0001', f'patches = ["{HERE}/0001')
    )
    mine = tmp_path / "mine.toml"
    mine.write_text(text + f'"{KERNEL_LOG_ROW}" = "WARN"\n')
    assert recipes.load(mine).expect[KERNEL_LOG_ROW] == "WARN"
    mine.write_text(text + f'"{KERNEL_LOG_ROW}/anon-4k" = "WARN"\n')
    with pytest.raises(BadInput, match="no memory kind"):
        recipes.load(mine)
