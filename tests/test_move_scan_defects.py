# SPDX-License-Identifier: GPL-2.0-only
"""UFFDIO_MOVE's and PAGEMAP_SCAN's defects of the 6.12 stable line (issue 29, items 12 and 13), in real
guests: each PRESENT on the model that reverts its fix on Debian's 6.12.118, ABSENT on stock-6.12, CANNOT
ASK (SKIP with the probed reason) on 6.1, with the evidence asserted; the host's answer where it has swap
or huge pages to ask with."""

import pytest

from guest_runs import assert_meets_its_recipe, run_scenarios  # tests/ is on sys.path (rootdir conftest, no package)

from uffdprobe.scenarios.common import PATTERN
from uffdprobe.scenarios.registry import SCENARIOS
from uffdprobe.verdicts import Verdict

pytestmark = pytest.mark.timeout(3600)  # a model is a small variant of stock-6.12; stock-6.12 may be cold

#: model recipe -> the catalogue scenario whose fix it reverts
MODELS = {
    "model-move-swapcache": "move-swapcache",
    "model-move-large-folio": "move-large-folio",
    "model-pagemap-scan-hugetlb-hole": "pagemap-scan-hugetlb-hole",
    "model-pagemap-scan-pmd-hole": "pagemap-scan-pmd-hole",
}
ASKED = ("move-swapcache", "move-basic", "move-large-folio", "pagemap-scan-pmd-hole", "pagemap-scan-hugetlb-hole")
KERNELS = [*MODELS, "stock-6.12", "stock"]


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    """One boot per kernel asking the move questions (the models first: they are the quick builds)."""
    out = tmp_path_factory.mktemp("move")
    return {k: run_scenarios(out, ASKED, k) for k in KERNELS}


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_meets_its_recipe(booted, kernel):
    assert_meets_its_recipe(booted[kernel], kernel)


@pytest.mark.vm
@pytest.mark.build
def test_move_of_a_swap_cached_page_bugs_on_the_model_and_moves_on_stock_6_12(booted):
    bad = booted["model-move-swapcache"]["cells"][("move-swapcache", "anon-swap")]
    assert bad.verdict is Verdict.OOPS, (bad.reason, bad.evidence)
    ev = bad.evidence
    # the trigger was met: a swap entry whose page sat in the swap cache, moved as a swap entry
    assert ev["source_before_swapped"] and ev["source_in_swap_cache"] and ev["moved"] == 4096
    assert ev["destination_swapped"] and not ev["source_after_swapped"]
    # the reader of the destination died in the kernel; the kernel says where
    assert ev["watched_thread_gone"] and ev["own_verdict"]["verdict"] == "ERROR"
    lines = "\n".join(ev["splat"]["lines"])
    assert "kernel BUG at" in ev["splat"]["first"] and "mm/rmap.c" in ev["splat"]["first"]
    assert "linear_page_index" in lines, "the folio's index was left at the source address"
    assert "__page_check_anon_rmap" in lines and "do_swap_page" in lines, lines
    good = booted["stock-6.12"]["cells"][("move-swapcache", "anon-swap")]
    assert good.verdict is Verdict.PASS, (good.reason, good.evidence)
    assert good.evidence["source_in_swap_cache"] and good.evidence["destination_swapped"]
    assert good.evidence["read"] == PATTERN[:64].hex() and good.evidence["victim_reaped"]
    assert "splat" not in good.evidence


@pytest.mark.vm
@pytest.mark.build
def test_move_basic_meets_the_same_bug_on_a_swapped_page_only(booted):
    """A page just paged out still sits in the swap cache, so move-basic's swapped-out kind meets the same
    BUG on the model; its small and huge pages move as on stock-6.12."""
    model, fixed = booted["model-move-swapcache"]["cells"], booted["stock-6.12"]["cells"]
    for memory in SCENARIOS["move-basic"].memory:
        r = model[("move-basic", memory)]
        if memory == "anon-swap":
            assert r.verdict is Verdict.OOPS and "do_swap_page" in "\n".join(r.evidence["splat"]["lines"])
        else:
            assert r.verdict is Verdict.PASS and r.evidence["read_ok"] and not r.evidence["source_mapped_after"]
        assert fixed[("move-basic", memory)].verdict is Verdict.PASS


@pytest.mark.vm
@pytest.mark.build
def test_move_out_of_a_held_thp_spins_on_the_model_and_is_refused_on_stock_6_12(booted):
    bad = booted["model-move-large-folio"]["cells"][("move-large-folio", "anon-thp")]
    good = booted["stock-6.12"]["cells"][("move-large-folio", "anon-thp")]
    for r in (bad, good):  # the same trigger on both: a PMD-mapped THP, its first page in an open pipe
        trigger = r.evidence["trigger"]
        assert trigger["huge_kb"] == 2048 and trigger["spliced"] == 4096, r.evidence
        assert trigger["source_before"]["present"] and trigger["source_before"]["exclusive"]
    assert bad.verdict is Verdict.HANG and "never returned" in bad.reason, (bad.reason, bad.evidence)
    hang = bad.evidence["hang"]
    assert "open pipe" in hang["watched_call"] and "held" not in bad.evidence  # the first move never returned
    # running, never asleep, for the whole bound: the split is retried, nothing waits
    assert set(hang["states_sampled"]) == {"R"} and hang["spinning_task"]["state"] == "R", hang
    assert hang["spin_s"] == SCENARIOS["move-large-folio"].defaults["move_bound_s"]
    frames = [line.split("] ", 1)[-1].split("+")[0] for line in hang["spinning_task"]["stack"]]
    assert frames[:2] == ["move_pages", "userfaultfd_ioctl"], frames  # move_pages_pte() is inlined
    # killable: the SIGKILL at the bound ended the spin and the process (reaped, not left unkillable)
    assert "killed the process group" in bad.evidence["rescue"] and bad.evidence["exit"]["exit"] == -9
    assert bad.duration_s < 60, bad.duration_s
    assert good.verdict is Verdict.PASS, (good.reason, good.evidence)
    held, released = good.evidence["held"], good.evidence["released"]
    assert held == {**held, "moved": 0, "errno": "EBUSY"} and held["ms"] < 1000, held
    assert released["moved"] == 4096 and good.evidence["read"] and not good.evidence["source_after"]["present"]
    for model in MODELS:  # every other model carries this fix
        if model != "model-move-large-folio":
            assert booted[model]["cells"][("move-large-folio", "anon-thp")].verdict is Verdict.PASS, model


@pytest.mark.vm
@pytest.mark.build
def test_the_questions_cannot_be_asked_on_6_1(booted):
    for scenario in ASKED:
        for memory in SCENARIOS[scenario].memory:
            r = booted["stock"]["cells"][(scenario, memory)]
            lacks = "PAGEMAP_SCAN" if scenario.startswith("pagemap-scan") else "UFFD_FEATURE_MOVE"
            assert r.verdict is Verdict.SKIP and lacks in r.reason, (scenario, memory, r.reason)


@pytest.mark.vm
@pytest.mark.build
def test_pagemap_scan_of_a_hugetlb_hole_deadlocks_on_the_model_and_protects_on_stock_6_12(booted):
    bad = booted["model-pagemap-scan-hugetlb-hole"]["cells"][("pagemap-scan-hugetlb-hole", "hugetlb")]
    assert bad.verdict is Verdict.HANG, (bad.reason, bad.evidence)
    assert "scan_returned" not in bad.evidence
    [task] = bad.evidence["exit"]["unkillable"]  # SIGKILL did not end it: it waits for a lock it holds
    assert task["state"] == "D" and task["wchan"] == "hugetlb_vma_lock_write", task
    frames = [line.split("] ", 1)[-1].split("+")[0] for line in task["stack"]]
    chain = [
        "hugetlb_vma_lock_write",
        "hugetlb_change_protection",
        "uffd_wp_range",
        "pagemap_scan_pte_hole",
        "do_pagemap_scan",
    ]
    assert [f for f in frames if f in chain] == chain, task["stack"]
    good = booted["stock-6.12"]["cells"][("pagemap-scan-hugetlb-hole", "hugetlb")]
    assert good.verdict is Verdict.PASS, (good.reason, good.evidence)
    assert not good.evidence["pagemap_before"]["uffd_wp"] and good.evidence["pagemap_after_scan"]["uffd_wp"]
    assert good.evidence["written_pages"] == 512 and good.evidence["uffd_messages"] == 0
    # the other model carries this fix: it answers as stock-6.12
    assert booted["model-move-swapcache"]["cells"][("pagemap-scan-hugetlb-hole", "hugetlb")].verdict is Verdict.PASS
    assert booted["model-pagemap-scan-hugetlb-hole"]["cells"][("move-swapcache", "anon-swap")].verdict is Verdict.PASS


@pytest.mark.vm
@pytest.mark.build
def test_a_thp_dropped_whole_reads_clean_on_the_model_and_written_on_stock_6_12(booted):
    bad = booted["model-pagemap-scan-pmd-hole"]["cells"][("pagemap-scan-pmd-hole", "anon-thp")]
    good = booted["stock-6.12"]["cells"][("pagemap-scan-pmd-hole", "anon-thp")]
    for r in (bad, good):  # the same trigger on both: a clean, protected, PMD-mapped THP, zapped whole
        assert r.evidence["huge_kb_before_zap"] * 1024 == r.evidence["pages"] * 4096, r.evidence
        assert r.evidence["written_after_protect"] == 0 and r.evidence["reads_zero_after_zap"]
        assert not r.evidence["pagemap_after_zap"]["present"]
    assert bad.verdict is Verdict.WP_LOST and bad.evidence["written_after_zap"] == 0, (bad.reason, bad.evidence)
    assert good.verdict is Verdict.PASS and good.evidence["written_after_zap"] == good.evidence["pages"]
    for model in MODELS:  # every other model carries this fix
        if model != "model-pagemap-scan-pmd-hole":
            assert booted[model]["cells"][("pagemap-scan-pmd-hole", "anon-thp")].verdict is Verdict.PASS, model


def test_host_write_protects_a_hugetlb_hole(tmp_path, kf, huge_pages):
    run = run_scenarios(tmp_path, ["pagemap-scan-hugetlb-hole"])
    assert run["status"] == 0, run["stderr"][-3000:]
    [r] = run["results"]
    assert r.verdict is Verdict.PASS, (r.reason, r.evidence)
    assert r.evidence["pagemap_after_scan"]["uffd_wp"] and r.evidence["written_pages"] == 512


def test_host_reports_a_pmd_hole_written(tmp_path, kf):
    run = run_scenarios(tmp_path, ["pagemap-scan-pmd-hole"])
    assert run["status"] == 0, run["stderr"][-3000:]
    [r] = run["results"]
    if r.verdict is Verdict.SKIP:
        pytest.skip(r.reason)  # no THP formed here
    assert r.verdict is Verdict.PASS and r.evidence["written_after_zap"] == r.evidence["pages"], r.evidence


def test_host_moves_a_swap_cached_page(tmp_path, kf, host_swap):
    if host_swap:
        pytest.skip(host_swap)
    run = run_scenarios(tmp_path, ["move-swapcache"])
    assert run["status"] == 0, run["stderr"][-3000:]
    [r] = run["results"]
    assert r.verdict is Verdict.PASS, (r.reason, r.evidence)
    assert r.evidence["source_in_swap_cache"] and r.evidence["read"] == PATTERN[:64].hex()


def test_host_refuses_a_move_out_of_a_held_thp(tmp_path, kf):
    run = run_scenarios(tmp_path, ["move-large-folio"])
    assert run["status"] == 0, run["stderr"][-3000:]
    [r] = run["results"]
    if r.verdict is Verdict.SKIP:
        pytest.skip(r.reason)  # no THP formed here
    assert r.verdict is Verdict.PASS and r.evidence["held"]["errno"] == "EBUSY", (r.reason, r.evidence)
    assert r.evidence["released"]["moved"] == 4096 and r.evidence["read"]
