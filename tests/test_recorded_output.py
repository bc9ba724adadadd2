# SPDX-License-Identifier: GPL-2.0-only
"""Recorded output (issue 25): what real kernels and the mm selftests printed in uffdprobe's own boots,
kept under tests/test_data/ (README.txt there says which run, kernel and command each came from), read
by the project's parsers into the facts read off each file by eye: the selftests' case counts against
their own totals line, the exact names of the failing cases, the panic's reason and report, the kernel
version, what the guest printed, and the outcome uffdprobe recorded for that boot.
"""

import re
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from uffdprobe.results import catalogue
from uffdprobe.results.catalogue import crash_frame
from uffdprobe.results.matrix import KernelRun, Matrix
from uffdprobe.run import guest
from uffdprobe.scenarios.catalogue import MOVE_PMD_MIGRATION
from uffdprobe.supervise.kselftest_output import ERROR, FAIL, PASS, SKIP, Output, parse_tap, parse_uffd_unit
from uffdprobe.vm import console, outcome
from uffdprobe.verdicts import Result, Verdict
from uffdprobe.vm.qemu import QemuRun

DATA = Path(__file__).resolve().parent / "test_data"
LIMITS = {"timeout": 900, "silence_timeout": 300}
STOCK_BANNER = (
    "6.1.192 (root@vm) (gcc (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) "
    "2.40) #1 SMP Sun Dec  6 22:29:22 UTC 2026"
)


def _read(name: str) -> str:
    return (DATA / name).read_text(errors="replace")  # as vm/boot.py reads a console log


def _tap_totals(out: Output) -> dict:
    """The kselftest "# Totals:" line the parser kept, as numbers."""
    return {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", out.totals)}


def _verdicts(out: Output) -> Counter:
    return Counter(case.verdict for case in out.cases)


def _agrees_with_totals(out: Output) -> None:
    """Every case the program counted is a case read, each counted where the program counted it."""
    totals = _tap_totals(out)
    got = _verdicts(out)
    assert len(out.cases) == out.plan == sum(totals.values())
    assert [c.number for c in out.cases] == list(range(1, out.plan + 1))
    assert got[PASS] == totals["pass"] + totals["xfail"]  # an expected failure is the test's pass
    assert got[FAIL] == totals["fail"] + totals["xpass"] and got[SKIP] == totals["skip"]
    assert got[ERROR] == totals["error"]
    assert len({c.name for c in out.cases}) == len(out.cases) and out.unfinished is None


def test_cow_on_stock_counts_its_expected_failures_and_skips():
    out = parse_tap(_read("kselftest-cow-stock-6.1.192.txt"))
    assert out.plan == 173 and out.totals == "pass:92 fail:0 xfail:4 xpass:0 skip:77 error:0"
    _agrees_with_totals(out)
    xfail = {c.number: c for c in out.cases if "XFAIL" in c.reason}
    assert sorted(xfail) == [33, 44, 55, 66]
    assert xfail[33].name == "vmsplice() + unmap in child ... with hugetlb (2048 kB)"
    assert xfail[33].reason == "(XFAIL: Leak from parent into child)"  # "ok 33 # XFAIL Leak from ..."
    assert xfail[66].name == "vmsplice() + unmap in parent after fork() ... with hugetlb (2048 kB)"
    assert xfail[66].lines == [
        "# [RUN] vmsplice() + unmap in parent after fork() ... with hugetlb (2048 kB)",
        "ok 66 # XFAIL Leak from child into parent",
    ]
    skips = Counter(c.reason for c in out.cases if c.verdict == SKIP)
    assert skips == {"PIN_LONGTERM_TEST_START failed": 76, "MADV_COLLAPSE failed: Invalid argument": 1}
    first = out.cases[0]
    assert (first.name, first.verdict, first.reason) == (
        "Basic COW after fork() ... with base page",
        PASS,
        "No leak from parent into child",
    )


def test_cow_on_model_5_7_names_the_eight_leaking_cases():
    out = parse_tap(_read("kselftest-cow-model-5.7.txt"))
    assert out.plan == 173 and out.totals == "pass:84 fail:8 xfail:4 xpass:0 skip:77 error:0"
    _agrees_with_totals(out)
    failed = {(c.number, c.name, c.reason) for c in out.cases if c.verdict == FAIL}
    parent, child = "Leak from parent into child", "Leak from child into parent"
    assert failed == {
        (23, "vmsplice() + unmap in child ... with base page", parent),
        (25, "vmsplice() + unmap in child ... with THP (2048 kB)", parent),
        (34, "vmsplice() + unmap in child with mprotect() optimization ... with base page", parent),
        (36, "vmsplice() + unmap in child with mprotect() optimization ... with THP (2048 kB)", parent),
        (45, "vmsplice() before fork(), unmap in parent after fork() ... with base page", child),
        (47, "vmsplice() before fork(), unmap in parent after fork() ... with THP (2048 kB)", child),
        (56, "vmsplice() + unmap in parent after fork() ... with base page", child),
        (58, "vmsplice() + unmap in parent after fork() ... with THP (2048 kB)", child),
    }
    swapped = next(c for c in out.cases if c.number == 24)  # the swapped-out page between two leaks
    assert (swapped.name, swapped.verdict) == ("vmsplice() + unmap in child ... with swapped out base page", PASS)


def test_gup_longterm_on_stock():
    out = parse_tap(_read("kselftest-gup_longterm-stock-6.1.192.txt"))
    assert out.plan == 40 and out.totals == "pass:6 fail:0 xfail:0 xpass:0 skip:34 error:0"
    _agrees_with_totals(out)
    passed = {c.number: c.name for c in out.cases if c.verdict == PASS}
    assert passed == {
        33: "io_uring fixed buffer with MAP_SHARED file mapping ... with memfd",
        34: "io_uring fixed buffer with MAP_SHARED file mapping ... with tmpfile",
        35: "io_uring fixed buffer with MAP_SHARED file mapping ... with local tmpfile",
        37: "io_uring fixed buffer with MAP_PRIVATE file mapping ... with memfd",
        38: "io_uring fixed buffer with MAP_PRIVATE file mapping ... with tmpfile",
        39: "io_uring fixed buffer with MAP_PRIVATE file mapping ... with local tmpfile",
    }
    assert {c.reason for c in out.cases if c.verdict == PASS} == {"Should have worked"}
    skips = Counter(c.reason for c in out.cases if c.verdict == SKIP)
    assert skips == {"PIN_LONGTERM_TEST_START failed": 24, "need more free huge pages": 10}
    assert out.cases[-1].name == "io_uring fixed buffer with MAP_PRIVATE file mapping ... with memfd hugetlb (2048 kB)"


def test_uffd_unit_tests_own_format_on_stock():
    text = _read("uffd-unit-tests-stock-6.1.192.txt")
    out = parse_uffd_unit(text)
    assert out.totals == "pass=6, skip=14, fail=0 (total=20)"
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out.totals)}
    assert len(out.cases) == counts["total"] and out.unfinished is None
    assert _verdicts(out) == {PASS: counts["pass"], SKIP: counts["skip"]} and counts["fail"] == 0
    assert [c.name for c in out.cases if c.verdict == PASS] == [
        f"{test} on {mem}" for test in ("wp-fork", "wp-fork-with-event") for mem in ("anon", "shmem", "shmem-private")
    ]
    skipped = {c.name: c.reason for c in out.cases if c.verdict == SKIP}
    assert skipped["wp-fork on hugetlb"] == "memory allocation failed"
    assert skipped["wp-fork-pin-with-event on shmem-private"] == "Possibly CONFIG_GUP_TEST missing or unprivileged"
    assert Counter(skipped.values()) == {
        "memory allocation failed": 8,
        "Possibly CONFIG_GUP_TEST missing or unprivileged": 6,
    }
    no_tap = parse_tap(text)  # 6.12's uffd-unit-tests prints no TAP: nothing to read as TAP
    assert no_tap.cases == [] and no_tap.plan is None and no_tap.totals == ""


def _classify(text: str, channel: Path, status_file: str = "") -> outcome.Verdict:
    """The outcome of a boot whose QEMU exited 0 by itself (-no-reboot: the guest's restart ends QEMU), with
    the channel's recorded exit_status file when the guest wrote one."""
    channel.mkdir()
    if status_file:
        shutil.copy(DATA / status_file, channel / "exit_status")
    return outcome.classify(text, "", QemuRun(returncode=0), channel, LIMITS)


def test_a_normal_boot(tmp_path):
    text = _read("console-ok-stock-6.1.192.log")
    assert console.linux_version(text) == STOCK_BANNER
    assert not console.has_panic(text) and console.panic_lines(text) == [] and console.panic_reason(text) == ""
    assert console.init_failure(text) == ""
    shown = console.guest_output(text)
    assert shown[0] == "guest swap: /dev/vdb (serial uffdprobe-swap) is swap now"
    assert shown[1] == "kernel 6.1.192: 2 runs, selftests cow" and shown[-1] == "summary: 90 PASS, 86 SKIP"
    assert sum(1 for line in shown if line.startswith("      cow: ")) == 173  # every case of the selftest
    assert not any(console.PRINTK_RE.match(line) for line in shown)
    verdict = _classify(text, tmp_path / "channel", "console-ok-stock-6.1.192.exit_status")
    assert (verdict.outcome, verdict.reason, verdict.exit_status) == (outcome.OK, "command exited 0", 0)


def test_a_warning_is_no_panic(tmp_path):
    text = _read("console-warn-splat-on-request-6.1.192.log")
    assert console.linux_version(text).endswith(") #4 SMP Sun Dec  6 22:35:03 UTC 2026")
    assert not console.has_panic(text) and console.panic_lines(text) == []
    shown = console.guest_output(text)
    assert shown[-2:] == [
        "summary: 1 WARN",
        "UNEXPECTED: splat-warn[anon-4k]: nothing declared, got WARN: the "
        "kernel logged WARNING: CPU: 0 PID: 63 at ../tree/kernel/sys.c:2702 "
        "__x64_sys_prctl+0x4f0/0x538 while it ran (its own verdict: PASS: prctl WARN returned 0 "
        "(this kernel has the splat hook))",
    ]
    assert not any(line in shown for line in ("Call Trace:", " <TASK>", "---[ end trace 0000000000000000 ]---"))
    verdict = _classify(text, tmp_path / "channel", "console-warn-splat-on-request-6.1.192.exit_status")
    assert (verdict.outcome, verdict.reason, verdict.exit_status) == (outcome.OK, "command exited 1", 1)


def test_a_kernel_bug_then_a_soft_lockup_panic(tmp_path):
    text = _read("console-panic-model-move-swapcache-6.12.118.log")
    assert console.linux_version(text) == (
        "6.12.118 (root@vm) (gcc (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld "
        "(GNU Binutils for Debian) 2.40) #3 SMP Mon Dec  7 02:08:46 UTC 2026"
    )
    assert console.has_panic(text)
    reason = "Kernel panic - not syncing: softlockup: hung tasks"
    assert console.panic_reason(text) == reason
    lines = console.panic_lines(text)
    assert len(lines) == 103  # from the BUG's "cut here" (line 16) to the file's last line (118)
    assert lines[0] == "[    9.355581] ------------[ cut here ]------------"
    assert lines[1] == "[    9.355758] kernel BUG at ../tree/mm/rmap.c:1287!"
    assert "[   81.117765] watchdog: BUG: soft lockup - CPU#0 stuck for 67s! [python:49]" in lines
    assert lines[-2:] == [f"[   81.124139] {reason}", "[   81.163259] Kernel Offset: disabled"]
    assert [line.split("  ")[0] for line in console.guest_output(text)] == [
        "guest swap: /dev/vdb (serial uffdprobe-swap) is swap now",
        "kernel 6.12.118: 3 runs",
        "move-basic",
        "move-basic",
    ]  # anon-4k and anon-thp answered; the panic came during the third
    verdict = _classify(text, tmp_path / "channel")
    assert (verdict.outcome, verdict.reason, verdict.exit_status) == (outcome.PANIC, reason, None)
    assert verdict.panic_lines == lines


def _boot(text: str, tmp_path: Path, name: str) -> SimpleNamespace:
    """The fields of a finished boot (vm/boot.py's BootResult) that run/guest.py fills missing rows from."""
    v = _classify(text, tmp_path / "channel")
    return SimpleNamespace(
        outcome=v.outcome,
        reason=v.reason,
        exit_status=v.exit_status,
        panic_lines=v.panic_lines,
        kernel_report=v.kernel_report,
        console_log=DATA / name,
        timings={},
        kernel_identity={"release": "6.12.118"},
    )


def test_the_row_running_at_a_panic_gets_it_and_the_rest_never_ran(tmp_path):
    name = "console-panic-model-move-swapcache-6.12.118.log"
    boot = _boot(_read(name), tmp_path, name)
    rows = [("move-basic", m, None) for m in ("anon-4k", "anon-thp", "anon-swap")] + [("cow-leak", "anon-4k", None)]
    answered = [Result("move-basic", m, Verdict.PASS, "", {}, {}, {}, 0.2) for m in ("anon-4k", "anon-thp")]
    running, never = guest._cut_off(rows, answered, boot, started=True)
    assert (running.scenario, running.memory, running.verdict) == ("move-basic", "anon-swap", Verdict.PANIC)
    assert (
        running.evidence["running"] is True and running.reason == "Kernel panic - not syncing: softlockup: hung tasks"
    )
    assert running.evidence["panic_lines"][1] == "[    9.355758] kernel BUG at ../tree/mm/rmap.c:1287!"
    assert (never.scenario, never.verdict, never.evidence["running"]) == ("cow-leak", Verdict.PANIC, False)
    assert never.reason.startswith("never ran: the boot ended while move-basic[anon-swap] ran: Kernel panic")
    # a guest that died before its plan began (no verdict stream yet): no row was running
    assert all("running" not in r.evidence for r in guest._cut_off(rows, [], boot, started=False))
    # a BUG in the rmap check is not the crash of the PMD-migration defect: no frame of move_pages
    assert crash_frame(MOVE_PMD_MIGRATION, running) == ""


def test_an_oops_in_move_pages_then_a_soft_lockup_panic_is_the_defect(tmp_path):
    name = "console-panic-model-move-pmd-migration-6.12.118.log"
    text = _read(name)
    assert console.panic_reason(text) == "Kernel panic - not syncing: softlockup: hung tasks"
    lines = console.panic_lines(text)
    assert lines[0] == "[    8.224047] BUG: unable to handle page fault for address: ffd418000001d008"
    assert lines[-2:] == [
        "[   56.782415] Kernel panic - not syncing: softlockup: hung tasks",
        "[   56.791056] Kernel Offset: disabled",
    ]
    [r] = guest._cut_off([("move-pmd-migration", "anon-thp", None)], [], _boot(text, tmp_path, name), started=True)
    assert r.verdict is Verdict.PANIC and r.evidence["running"] is True and r.evidence["panic_lines"] == lines
    assert crash_frame(MOVE_PMD_MIGRATION, r) == "RIP: 0010:move_pages+0x494/0x1021"
    declared = Matrix([KernelRun("model", [r], expect={"move-pmd-migration": "PANIC"})])
    [a] = catalogue.answers(declared)
    assert (a.defect, a.answer, a.accepted) == (MOVE_PMD_MIGRATION, "PRESENT", True)
    assert a.why.endswith("hung tasks, after RIP: 0010:move_pages+0x494/0x1021"), a.why
    [a] = catalogue.answers(Matrix([KernelRun("model", [r])]))
    assert (a.answer, a.accepted) == ("PRESENT", False)  # undeclared: a kernel problem for check (exit 1)
    r.evidence["running"] = False  # a row that never ran is no answer, whatever the report says
    [a] = catalogue.answers(Matrix([KernelRun("model", [r], expect={"move-pmd-migration": "PANIC"})]))
    assert a.answer == "NO ANSWER"


def test_an_oops_far_above_its_panic_is_still_the_rows_report(tmp_path):
    """The 45th row of a whole check: the oops, then an RCU stall report 21 s later, then the soft lockup
    and the panic 72 s after the oops. The panic's excerpt reaches back to the stall only; the row's report
    starts at the oops, after the guest's last verdict line."""
    name = "console-panic-model-move-pmd-migration-check-6.12.118.log"
    text = _read(name)
    panic = console.panic_lines(text)
    assert panic[0] == "[   53.555286] Call Trace:", panic[0]  # the stall's own trace, 120 lines back
    report = console.row_report(text)
    assert report[0] == "[   32.537973] BUG: unable to handle page fault for address: ffd4180000022008"
    assert report[-1] == "[  104.730484] Kernel panic - not syncing: softlockup: hung tasks"
    assert console.guest_output(text)[-1].startswith("[44/45] pagemap-scan-hugetlb-hole hugetlb   PASS")
    rows = [("pagemap-scan-hugetlb-hole", "hugetlb", None), ("move-pmd-migration", "anon-thp", None)]
    answered = [Result(*rows[0][:2], Verdict.PASS, "", {}, {}, {}, 0.1)]
    [r] = guest._cut_off(rows, answered, _boot(text, tmp_path, name), started=True)
    assert r.evidence["kernel_report"] == report and r.evidence["panic_lines"] == panic
    assert crash_frame(MOVE_PMD_MIGRATION, r) == "RIP: 0010:move_pages+0x494/0x1021"
    excerpt_only = Result(r.scenario, r.memory, r.verdict, r.reason, {**r.evidence, "kernel_report": []})
    assert crash_frame(MOVE_PMD_MIGRATION, excerpt_only) == ""  # there only move_pages(2)'s frames


def test_a_boot_stopped_before_init():
    text = _read("console-before-init-6.1.192.log")
    assert console.linux_version(text) == STOCK_BANNER
    assert console.INIT_REACHED not in text and console.guest_output(text) == []
    assert console.init_failure(text) == "" and not console.has_panic(text)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir() if p.name != "README.txt"))
def test_every_recorded_file_is_listed_in_the_readme(name):
    """Each file under test_data/ opens an entry of README.txt (where it came from, what it is for)."""
    assert re.search(rf"^(?:\S+, )?{re.escape(name)}(?:, \S+)?$", (DATA / "README.txt").read_text(), re.M)
