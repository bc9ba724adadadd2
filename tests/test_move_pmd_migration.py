# SPDX-License-Identifier: GPL-2.0-only
"""move-pmd-migration (issue 29, item 12): UFFDIO_MOVE of a page of a THP while move_pages(2) migrates
the THP between two NUMA nodes, asked by `uffdprobe check` in real guests.

On model-move-pmd-migration (Debian's 6.12.118 without aba6faec0103 and without the pmd_devmap() test
mainline dropped, NUMA emulation on) the move meets the migration entry and oopses in move_pages(); the
guest panics on the soft lockup that follows: PRESENT, by the frame the panic's report names. Its twin
with the fix (the same configuration and devmap patch, aba6faec0103 kept) splits the entry, waits for
the migration and answers: ABSENT. CANNOT ASK on stock-6.12 (no NUMA), on 6.1 (no UFFDIO_MOVE), nor on
a host with one node."""

import subprocess
import sys
from pathlib import Path

import pytest

from formats import valid_json
from guest_runs import RUN_TIMEOUT_S, run_scenarios  # tests/ is on sys.path (rootdir conftest, no package)

from uffdprobe.kbuild import recipes
from uffdprobe.scenarios.move_migration import ROUNDS
from uffdprobe.scenarios.registry import SCENARIOS
from uffdprobe.verdicts import Result, Verdict

pytestmark = pytest.mark.timeout(3600)  # the NUMA model shares no ccache objects with stock-6.12: cold

MODEL = "model-move-pmd-migration"
TWIN = "numa-6.12-fixed"
DEFECT = SCENARIOS["move-pmd-migration"].defect
CELL = ("move-pmd-migration", "anon-thp")


def _twin(folder: Path) -> Path:
    """The model's configuration and its devmap patch, without the revert: a kernel that has the fix."""
    model = recipes.load(MODEL)
    devmap = [p for p in model.patches if "no-devmap-test" in Path(p).name]
    assert len(devmap) == 1 and len(model.patches) == 2, model.patches
    path = folder / f"{TWIN}.toml"
    path.write_text(
        f'name = "{TWIN}"\n'
        f'summary = "{MODEL} with aba6faec0103 kept"\n'
        f'source = "{model.source}"\n'
        f'base = "{model.base}"\n'
        f"fragments = {[str(f) for f in model.fragments]!r}\n".replace("'", '"')
        + f'patches = ["{devmap[0]}"]\n\n[expect]\n"{CELL[0]}" = "PASS"\n'
    )
    return path


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One `uffdprobe check` of the defect on stock, stock-6.12, the model and its fixed twin."""
    out = tmp_path_factory.mktemp("pmdmig")
    path = out / "check.json"
    kernels = ["stock", "stock-6.12", MODEL, f"{TWIN}={_twin(out)}"]
    argv = [sys.executable, "-m", "uffdprobe", "check", "--defect", DEFECT.id, "--json", str(path)]
    for k in kernels:
        argv += ["--kernel", k]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S * 2)
    doc = valid_json(path, "check") if path.exists() else {}
    return {"status": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "doc": doc}


def _answer(checked, kernel: str) -> dict:
    [a] = [a for a in checked["doc"]["answers"] if a["kernel"] == kernel]
    return a


def _run(checked, kernel: str) -> Result:
    [c] = [c for c in checked["doc"]["matrix"]["cells"] if (c["kernel"], c["scenario"], c["memory"]) == (kernel, *CELL)]
    [r] = c["results"]
    return Result.from_dict(r)


@pytest.mark.vm
@pytest.mark.build
def test_check_answers_present_on_the_model_only_every_cell_as_declared(checked):
    assert checked["status"] == 0, checked["stdout"][-3000:] + checked["stderr"][-3000:]
    answers = {a["kernel"]: a["answer"] for a in checked["doc"]["answers"]}
    assert answers == {"stock": "CANNOT ASK", "stock-6.12": "CANNOT ASK", MODEL: "PRESENT", TWIN: "ABSENT"}
    present = _answer(checked, MODEL)
    assert present["declared"] is True and present["fix"].startswith("aba6faec0103 "), present
    marks = {a["kernel"]: [c["mark"] for c in a["cells"]] for a in checked["doc"]["answers"]}
    assert marks == {"stock": ["expected"], "stock-6.12": ["expected"], MODEL: ["expected"], TWIN: ["expected"]}, marks


@pytest.mark.vm
@pytest.mark.build
def test_the_model_oopses_in_move_pages_and_the_guest_panics(checked):
    r = _run(checked, MODEL)
    assert r.verdict is Verdict.PANIC and r.evidence["running"] is True, (r.reason, r.evidence)
    report = r.evidence["kernel_report"]  # from the row's first splat to the panic
    # the oops: a read through the struct page pmd_folio() made of the migration entry's bits, in the
    # UFFDIO_MOVE ioctl; then the tasks left behind the PMD lock the dead task held, and the panic (the
    # soft-lockup watchdog's, or the hung-task detector's first on a loaded machine: other reports may
    # come between, so the panic's own excerpt need not reach back to the oops)
    assert "BUG: unable to handle page fault" in report[0], report[:5]
    assert any("RIP: 0010:move_pages+" in line for line in report), report
    assert any("userfaultfd_ioctl+" in line for line in report), report
    panic = r.evidence["panic_lines"]
    assert r.reason.startswith("Kernel panic - not syncing") and any(r.reason in x for x in panic), r.reason
    assert "move_pages+" in _answer(checked, MODEL)["why"]


@pytest.mark.vm
@pytest.mark.build
def test_the_fixed_twin_splits_the_entry_and_waits(checked):
    r = _run(checked, TWIN)
    assert r.verdict is Verdict.PASS, (r.reason, r.evidence)
    ev = r.evidence
    # the trigger: a PMD-mapped THP shared with a child, refused whole while its PMD is present
    assert ev["huge_kb_before"] == 2048 and ev["first_move"] == "EBUSY", ev
    # the THP went from node to node and back, as a THP (the child still maps it whole)
    assert ev["migrations"] == [(ev["home"] + 1 + i) % 2 for i in range(ROUNDS)], ev["migrations"]
    assert ev["sharer_huge_kb_after"] == 2048, ev
    # a move met the migration entry: the PMD was split in this process only, no page moved, nothing died
    assert ev["split"] and ev["huge_kb_after"] == 0 and ev["moved"] == 0, ev
    assert ev["watch_done"] and ev["victim_reaped"] and "splat" not in ev, ev
    race, budget = ev["race"], SCENARIOS[CELL[0]].race.tries
    assert 1 <= race["tries_made"] <= budget and (race["stopped_by"], race["hit_on_try"]) == ("answered", None), race
    assert r.reason.endswith(f"(on try {race['tries_made']} of {budget})"), r.reason


@pytest.mark.vm
@pytest.mark.build
def test_the_question_cannot_be_asked_without_numa_or_move(checked):
    no_numa = _run(checked, "stock-6.12")
    assert no_numa.verdict is Verdict.SKIP and "no NUMA support" in no_numa.reason, no_numa.reason
    old = _run(checked, "stock")
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
