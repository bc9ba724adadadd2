# SPDX-License-Identifier: GPL-2.0-only
"""CVE-2022-2590 (issue 29, item 14) in real guests: a /proc/self/mem write racing MADV_DONTNEED and
UFFDIO_CONTINUE changes a write-sealed memfd on model-foll-force-cow (5535be309971 reverted on 6.1.192),
with the bytes expected and seen and the try that hit asserted; the file stays unchanged through the whole
try budget on stock (6.1.192), stock-6.12 and the host, all of which carry the fix."""

import pytest

from guest_runs import assert_meets_its_recipe, run_scenarios  # tests/ is on sys.path (rootdir conftest, no package)

from uffdprobe.scenarios.foll_force_cow import FILE_BYTES, FORCED_BYTES
from uffdprobe.scenarios.registry import SCENARIOS
from uffdprobe.verdicts import Result, Verdict

pytestmark = pytest.mark.timeout(3600)  # the model is a small variant of stock (mm/ rebuilt)

SCENARIO = "continue-foll-force-cow"
MODEL = "model-foll-force-cow"
FIXED = ["stock", "stock-6.12"]
RACE = SCENARIOS[SCENARIO].race


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    """One boot per kernel asking the question (the model first: it is the quick build)."""
    out = tmp_path_factory.mktemp("foll-force-cow")
    return {k: run_scenarios(out, [SCENARIO], k) for k in [MODEL, *FIXED]}


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("kernel", [MODEL, *FIXED])
def test_kernel_meets_its_recipe(booted, kernel):
    assert_meets_its_recipe(booted[kernel], kernel)
    assert [(r.scenario, r.memory) for r in booted[kernel]["results"]] == [(SCENARIO, "shmem")]


@pytest.mark.vm
@pytest.mark.build
def test_a_force_write_changes_the_sealed_file_on_the_model(booted):
    [r] = booted[MODEL]["results"]
    assert r.verdict is Verdict.LEAK, (r.reason, r.evidence)
    ev = r.evidence
    # the private mapping took the first forced write: the trigger is the race, not a broken COW
    assert ev["private_copy_after_first_write"] == FORCED_BYTES.decode()
    # the file's bytes: what it held, what the forced write put there, counted in whole pages
    bad = ev["corrupted"]
    assert bad["expected"] == FILE_BYTES.decode() and bad["seen"] == FORCED_BYTES.decode(), bad
    assert bad["offset"] % 4096 == 0 and 0 <= bad["page"] < ev["pages"], bad
    assert bad["bytes_changed"] > 0 and bad["bytes_changed"] % 4096 == 0, bad
    assert f"offset {bad['offset']}" in r.reason
    # the try that hit, within the budget, and the counters of the race that led to it
    race = ev["race"]
    assert race["stopped_by"] == "hit" and 1 <= race["hit_on_try"] == race["tries_made"] <= RACE.tries, race
    assert f"(on try {race['hit_on_try']} of {RACE.tries})" in r.reason
    assert ev["counts"]["writes"] > 0 and ev["counts"]["zaps"] > 0 and ev["counts"]["continued"] > 0, ev["counts"]


def _unchanged_through_the_budget(r: Result) -> None:
    assert r.verdict is Verdict.PASS, (r.reason, r.evidence)
    ev = r.evidence
    assert "corrupted" not in ev and ev["private_copy_after_first_write"] == FORCED_BYTES.decode()
    race = ev["race"]
    assert race["hit_on_try"] is None and race["tries_made"] >= 1, race
    assert race["miss_probability"] == pytest.approx((1 - RACE.p_hit) ** race["tries_made"])
    # the race ran: forced writes, zaps and CONTINUEs every try, none of which reached the file
    assert ev["counts"]["writes"] > race["tries_made"] and ev["counts"]["zaps"] > race["tries_made"], ev["counts"]
    assert ev["counts"]["continued"] > 0, ev["counts"]


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("kernel", FIXED)
def test_the_sealed_file_stays_unchanged_on_fixed_kernels(booted, kernel):
    [r] = booted[kernel]["results"]
    _unchanged_through_the_budget(r)
    assert r.evidence["race"]["stopped_by"] in ("tries", "time")


def test_the_sealed_file_stays_unchanged_on_the_host(tmp_path, kf):
    from uffdprobe.uffd.flags import Feature

    if not kf.has(Feature.MINOR_SHMEM):
        pytest.skip("the host lacks UFFD_FEATURE_MINOR_SHMEM")
    run = run_scenarios(tmp_path, [SCENARIO])
    assert run["status"] == 0, run["stderr"][-3000:]
    [r] = run["results"]
    _unchanged_through_the_budget(r)
    assert r.evidence["race"]["tries_made"] == RACE.tries  # the host is fast enough for the whole budget
