# SPDX-License-Identifier: GPL-2.0-only
"""umap-evict through the real supervisor on the host kernel (upstream's fix): PASS, and a real HANG."""

import os

import pytest

from uffdprobe.uffd import features, odirect
from uffdprobe.supervise import supervisor
from uffdprobe.scenarios.registry import SCENARIOS, skip_reason
from uffdprobe.verdicts import Verdict

SCENARIO = SCENARIOS["umap-evict"]


@pytest.fixture
def store_dir(tmp_path):
    """A fresh directory for the O_DIRECT store; skipped when its filesystem refuses O_DIRECT."""
    if not odirect.accepts_odirect(str(tmp_path)):
        pytest.skip(f"{tmp_path} does not accept O_DIRECT writes (tmpfs before 6.6?)")
    return str(tmp_path)


def run(kf, store_dir, limits=None, **params):
    skip = skip_reason(SCENARIO, "anon-4k", kf, store_dir)
    if skip:
        pytest.skip(skip)
    return supervisor.run_one(
        SCENARIO,
        "anon-4k",
        {**SCENARIO.defaults, **params},
        features.kernel_identity(),
        limits or supervisor.Limits(),
        store_dir,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"data_pages": 48, "buffer_pages": 4, "evictors": 1, "passes": 3, "seed": 12345},
    ],
    ids=["defaults", "one-evictor-three-passes"],
)
def test_sorts_through_a_small_buffer_with_real_evictions(kf, store_dir, params, live_children):
    res = run(kf, store_dir, **params)
    assert res.verdict is Verdict.PASS, (res.reason, res.evidence)
    ev = res.evidence
    pages = res.params["data_pages"]
    c = ev["counters"]
    assert c["evictions"] > pages and c["writebacks"] > 0, c
    assert c["missing_faults"] > pages, "evicted pages must have come back from the store"
    assert c["wp_faults"] > 0, "clean pages are filled write-protected; the sort's writes must trap"
    initial, final = ev["umap"]["initial"], ev["final"]
    assert final["unsorted"] == 0
    assert (final["sum"], final["xor"]) == (initial["sum"], initial["xor"])
    assert final["hash"] == initial["sorted_hash"]
    assert ev["umap"]["store"]["kind"] == "file" and not os.listdir(store_dir), "store left behind"
    if "seed" in params:
        assert ev["umap"]["seed"] == params["seed"]
    assert ev["exit"] == {"exit": 0, "killed": False}
    assert "hang" not in ev
    assert not live_children()


@pytest.fixture
def loop_device():
    """A 1 MiB loop device (the VM's scratch disk stands in this way), detached afterwards."""
    with odirect.loop_device(1 << 20) as dev:
        if dev is None:
            pytest.skip("needs root and losetup for a loop device")
        yield dev


@pytest.mark.timeout(120)
def test_store_on_a_block_device_at_offset_zero(kf, loop_device, live_children):
    res = run(kf, loop_device)
    assert res.verdict is Verdict.PASS, (res.reason, res.evidence)
    assert res.evidence["umap"]["store"] == {"kind": "block-device", "path": loop_device}
    assert res.evidence["counters"]["writebacks"] > 0
    too_big = run(kf, loop_device, data_pages=(2 << 20) // 4096)
    assert too_big.verdict is Verdict.SKIP and "holds 1048576 bytes" in too_big.reason
    assert not live_children()


@pytest.mark.timeout(60)
def test_lost_writebacks_are_reported_as_corruption(kf, store_dir, live_children):
    """Dirty pages dropped unwritten (real lost data, not an injected verdict) must fail the check."""
    res = run(kf, store_dir, selftest_drop_dirty=True)
    assert res.verdict is Verdict.ERROR, res.reason
    assert res.reason.startswith("data corrupted:"), res.reason
    assert res.evidence["final"]["hash"] != res.evidence["umap"]["initial"]["sorted_hash"]
    assert not live_children()


def test_an_untrapped_write_to_a_clean_page_is_wp_lost(kf, store_dir, live_children):
    """A clean page whose protection really went away and that was written: the eviction's
    read-back differs from the store, which is WP_LOST (the fixup variant does this by itself)."""
    res = run(kf, store_dir, selftest_unprotected_write=True)
    assert res.verdict is Verdict.WP_LOST, res.reason
    assert res.evidence["counters"]["untrapped_writes"] > 0
    assert not live_children()


@pytest.mark.timeout(60)
def test_evictor_writing_its_protected_page_is_hang_rescued_and_reaped(kf, store_dir, live_children):
    """The evictor stores into the dirty page it write-protected while the handler waits for that
    eviction: umap's v5.8 circular wait, made with a CPU write so that it happens on this kernel."""
    limits = supervisor.Limits(scenario_s=45.0)
    res = run(kf, store_dir, limits, selftest_cpu_write_evict=True)
    assert res.verdict is Verdict.HANG, (res.reason, res.evidence)
    hang = res.evidence["hang"]
    assert hang["watched_call"] == "umap-evict workload"
    blocked = hang["blocked_tasks"]
    evictors = [t for t in blocked if t["comm"] == "umap-evictor"]
    assert evictors, f"the evictor must be the task blocked in handle_userfault: {blocked}"
    for task in blocked:
        assert task["state"] in ("S", "D")
        if isinstance(task["stack"], list):
            assert any("handle_userfault" in frame for frame in task["stack"]), task["stack"]
        else:
            assert task["wchan"] == "handle_userfault"
    assert hang["counters"]["leaving_waits"] >= 1, "the handler must be waiting for the eviction"
    assert res.evidence["rescue"].startswith("unregister")
    after = res.evidence["after_rescue"]
    assert isinstance(after, dict), f"the child must finish after the rescue: {after}"
    assert "unregistered" in after["reason"]
    assert res.evidence["exit"] == {"exit": 0, "killed": False}
    assert res.duration_s < limits.hang_s + limits.rescue_s + 5
    assert not live_children()
    assert not os.listdir(store_dir)
