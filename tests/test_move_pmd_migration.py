# SPDX-License-Identifier: GPL-2.0-only
"""move-pmd-migration (issue 29, item 12): UFFDIO_MOVE of a page of a THP while move_pages(2) migrates
the THP between two NUMA nodes, in real guests. On model-move-pmd-migration (Debian's 6.12.118 without
aba6faec0103, NUMA emulation on) the move meets the migration entry and is refused with ENOENT: 6.12's
pmd_devmap() test reads the entry as devmap before the code the fix guards, so the crash does not show
on x86-64 6.12 (measured; the catalogue says so). CANNOT ASK on stock-6.12 (no NUMA), on 6.1 (no
UFFDIO_MOVE), nor on a host with one node."""

import pytest

from guest_runs import assert_meets_its_recipe, run_scenarios  # tests/ is on sys.path (rootdir conftest, no package)

from uffdprobe.scenarios.move_migration import ROUNDS
from uffdprobe.scenarios.registry import SCENARIOS
from uffdprobe.verdicts import Result, Verdict

pytestmark = pytest.mark.timeout(3600)  # the NUMA model shares no ccache objects with stock-6.12: cold

MODEL = "model-move-pmd-migration"
KERNELS = [MODEL, "stock-6.12", "stock"]
CELL = ("move-pmd-migration", "anon-thp")


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    """One boot per kernel asking the question."""
    out = tmp_path_factory.mktemp("pmdmig")
    return {k: run_scenarios(out, [CELL[0]], k) for k in KERNELS}


def _cell(booted, kernel: str) -> Result:
    [r] = [r for r in booted[kernel]["results"] if (r.scenario, r.memory) == CELL]
    return r


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_meets_its_recipe(booted, kernel):
    assert_meets_its_recipe(booted[kernel], kernel)


@pytest.mark.vm
@pytest.mark.build
def test_the_model_refuses_a_move_on_a_migration_entry_as_devmap(booted):
    r = _cell(booted, MODEL)
    assert r.verdict is Verdict.PASS, (r.reason, r.evidence)
    ev = r.evidence
    # the trigger: a PMD-mapped THP shared with a child, refused whole while its PMD is present
    assert ev["huge_kb_before"] == 2048 and ev["first_move"] == "EBUSY", ev
    # the THP went from node to node and back, as a THP (the child still maps it whole)
    assert ev["migrations"] == [(ev["home"] + 1 + i) % 2 for i in range(ROUNDS)], ev["migrations"]
    assert ev["sharer_huge_kb_after"] == 2048 and ev["huge_kb_after"] == 2048 and not ev["split"], ev
    # the moves that met the migration entry were refused with ENOENT, the others with EBUSY; none moved,
    # no thread died, the kernel logged nothing
    assert ev["errnos"]["ENOENT"] > 0 and set(ev["errnos"]) == {"EBUSY", "ENOENT"}, ev["errnos"]
    assert ev["moved"] == 0 and ev["watch_done"] and ev["victim_reaped"], ev
    # the try that met the entry ended the run (racy.Answered): PASS on that try, the race record whole
    race, budget = ev["race"], SCENARIOS[CELL[0]].race.tries
    assert (
        "splat" not in ev and "ENOENT" in r.reason and r.reason.endswith(f"(on try {race['hit_on_try']} of {budget})")
    )
    assert 1 <= race["hit_on_try"] == race["tries_made"] <= budget == race["tries"] and race["stopped_by"] == "hit", (
        race
    )


@pytest.mark.vm
@pytest.mark.build
def test_the_question_cannot_be_asked_without_numa_or_move(booted):
    no_numa = _cell(booted, "stock-6.12")
    assert no_numa.verdict is Verdict.SKIP and "no NUMA support" in no_numa.reason, no_numa.reason
    old = _cell(booted, "stock")
    assert old.verdict is Verdict.SKIP and "UFFD_FEATURE_MOVE" in old.reason, old.reason


def test_host_answers_or_names_what_it_lacks(tmp_path, kf):
    run = run_scenarios(tmp_path, [CELL[0]])
    assert run["status"] == 0, run["stderr"][-3000:]
    [r] = run["results"]
    if r.verdict is Verdict.SKIP:
        assert "NUMA node" in r.reason or "THP" in r.reason or "move_pages" in r.reason, r.reason
        pytest.skip(r.reason)  # one node here (or no THP): nothing to migrate to
    assert r.verdict is Verdict.PASS, (r.reason, r.evidence)  # 6.18 has the fix
    # the entry was met (a split PMD in this process, or ENOENT) or the whole budget was spent
    met = r.evidence.get("split") or r.evidence.get("errnos", {}).get("ENOENT")
    assert met or r.evidence["race"]["tries_made"] == SCENARIOS[CELL[0]].race.tries, r.evidence
