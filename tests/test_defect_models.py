# SPDX-License-Identifier: GPL-2.0-only
"""Defects 2-5 of the catalogue, each PRESENT on the model recipe that reverts its fix and ABSENT on stock (6.1.192)
and stock-6.12, in real guests, with the evidence asserted; the host cells are in test_scenarios.py."""

import subprocess
import sys

import pytest

from formats import valid_json

from uffdprobe.kbuild import recipes
from uffdprobe.results import expect
from uffdprobe.scenarios.registry import SCENARIOS
from uffdprobe.verdicts import Result, Verdict

pytestmark = pytest.mark.timeout(3600)  # may build the models (small variants of stock) and stock-6.12 cold

#: defect scenario -> the model recipe that reverts its fix
MODELS = {
    "copy-wp-readonly": "model-copy-wp-readonly",
    "zeropage-split-wp": "model-zeropage-split-wp",
    "swapoff-wp-loop": "model-swapoff-wp-loop",
    "mremap-wp-stale": "model-mremap-wp-stale",
}
FIXED = ["stock", "stock-6.12"]
KERNELS = list(MODELS.values()) + FIXED  # the models first: stock-6.12 may still be building


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    """One boot per kernel running the four defect scenarios on every memory kind each supports."""
    out = {}
    for name in KERNELS:
        path = tmp_path_factory.mktemp(name) / "results.json"
        proc = subprocess.run(
            [sys.executable, "-m", "uffdprobe", "run", "--kernel", name, "--json", str(path), *MODELS],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, f"{name}: exit {proc.returncode} (every verdict declared)\n{proc.stderr[-3000:]}"
        out[name] = [Result.from_dict(d) for d in valid_json(path, "results")["results"]]
    return out


def cells(results, scenario):
    """The results of one scenario, one per memory kind it ran on."""
    found = [r for r in results if r.scenario == scenario]
    assert {r.memory for r in found} == set(SCENARIOS[scenario].memory), found
    return found


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_meets_its_recipe(booted, name):
    assert not expect.check(recipes.load(name).expect, booted[name])


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("kernel", FIXED)
@pytest.mark.parametrize("scenario", list(MODELS))
def test_defect_absent_on_fixed_kernels(booted, kernel, scenario):
    for r in cells(booted[kernel], scenario):
        assert r.verdict is Verdict.PASS, (r.memory, r.reason, r.evidence)


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("scenario", list(MODELS))
def test_each_model_carries_only_its_own_defect(booted, scenario):
    for other in MODELS:
        for r in cells(booted[MODELS[other]], scenario):
            if other != scenario:
                assert r.verdict is Verdict.PASS, (other, r.memory, r.reason)
            else:
                assert r.verdict in (Verdict.WP_LOST, Verdict.HANG), (r.memory, r.reason)


@pytest.mark.vm
@pytest.mark.build
def test_copy_wp_into_readonly_vma_loses_the_protection(booted):
    [lost] = cells(booted["model-copy-wp-readonly"], "copy-wp-readonly")
    assert lost.verdict is Verdict.WP_LOST, lost.reason
    assert lost.evidence["messages"] == [], "the write must have come through without a WP message"
    assert lost.evidence["pagemap_after_copy"]["uffd_wp"] is False
    [kept] = cells(booted["stock"], "copy-wp-readonly")
    assert kept.evidence["pagemap_after_copy"]["uffd_wp"] is True
    assert set(kept.evidence["flags"]) == {"WP", "WRITE"}


@pytest.mark.vm
@pytest.mark.build
def test_huge_zero_page_split_drops_uffd_wp(booted):
    [lost] = cells(booted["model-zeropage-split-wp"], "zeropage-split-wp")
    assert lost.verdict is Verdict.WP_LOST, lost.reason
    assert lost.evidence["messages"] == []
    assert lost.evidence["pagemap_other_before_split"]["uffd_wp"] is True
    assert lost.evidence["pagemap_other_after_split"]["uffd_wp"] is False
    [kept] = cells(booted["stock"], "zeropage-split-wp")
    assert kept.evidence["pagemap_other_after_split"]["uffd_wp"] is True


@pytest.mark.vm
@pytest.mark.build
def test_swapoff_loops_on_a_uffd_wp_swap_entry(booted):
    [hang] = cells(booted["model-swapoff-wp-loop"], "swapoff-wp-loop")
    assert hang.verdict is Verdict.HANG, hang.reason
    spinning = hang.evidence["hang"]["spinning_task"]
    assert spinning["comm"] == "swapoff" and spinning["state"] in ("R", "D")
    assert hang.evidence["pagemap_swapped_out"]["swapped"] is True
    assert hang.evidence["pagemap_swapped_out"]["uffd_wp"] is True
    # try_to_unuse() is inlined into the syscall in this -Os build: its loop shows as __x64_sys_swapoff
    frames = hang.evidence["swapoff"]["stack_frames_seen"] + spinning["stack"]
    assert any(("try_to_unuse" in f or "sys_swapoff" in f) for f in frames), frames
    assert hang.evidence["rescue"].startswith("unprotect")
    assert hang.evidence["swapoff"]["exit"] == 0, "un-protecting the page must let swapoff finish"
    assert hang.evidence["after_rescue"]["verdict"] == "HANG", hang.evidence["after_rescue"]
    assert "already on" in hang.evidence["swap_after"] or "is swap now" in hang.evidence["swap_after"]
    [done] = cells(booted["stock"], "swapoff-wp-loop")
    after = done.evidence["pagemap_after_swapoff"]
    assert after["present"] and after["uffd_wp"], "swapoff brought the page back, still protected"


@pytest.mark.vm
@pytest.mark.build
def test_mremap_without_event_remap_leaves_stale_protection(booted):
    for hang in cells(booted["model-mremap-wp-stale"], "mremap-wp-stale"):
        assert hang.verdict is Verdict.HANG, (hang.memory, hang.reason)
        assert hang.evidence["pagemap_after_mremap"]["uffd_wp"] is True
        [msg] = hang.evidence["hang"]["pending_uffd_messages"]
        assert set(msg["flags"]) == {"WP", "WRITE"}
        stacks = [t["stack"] for t in hang.evidence["hang"]["blocked_tasks"] if isinstance(t["stack"], list)]
        assert any("handle_userfault" in f for s in stacks for f in s), stacks
        assert hang.evidence["after_rescue"]["verdict"] == "HANG", hang.evidence["after_rescue"]
    for kept in cells(booted["stock"], "mremap-wp-stale"):
        assert kept.evidence["pagemap_after_mremap"]["uffd_wp"] is False
