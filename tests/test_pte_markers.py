# SPDX-License-Identifier: GPL-2.0-only
"""Issue 29 items 8 and 10, the pte-marker defects: `uffdprobe check` on stock, stock-6.12 and the model
recipe that reverts the fix names each PRESENT on its model only (declared: exit 0), in real guests, with
the evidence asserted (the kernel's splat lines, the page pfn 0 maps); both ABSENT (PASS) on the host."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from formats import valid_json  # tests/ is on sys.path (rootdir conftest, no package)
from uffdprobe.exitcodes import Exit
from uffdprobe.scenarios.registry import SCENARIOS
from uffdprobe.verdicts import Result, Verdict

#: catalogue defect -> (its scenario, the model recipe reverting its fix on Debian's 6.1.192)
DEFECTS = {
    "hugetlb-marker-reprotect": ("wp-hugetlb-marker-reprotect", "model-hugetlb-marker-reprotect"),
    "fork-marker-no-event": ("fork-marker-no-event", "model-fork-marker-no-event"),
}
FIXED = ("stock", "stock-6.12")
ZEROS = "00" * 16
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One whole `uffdprobe check` on stock, stock-6.12 and both models (TCG): the issue's acceptance, each
    kernel booted once for both defects."""
    path = tmp_path_factory.mktemp("check") / "check.json"
    models = [model for _, model in DEFECTS.values()]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "check",
            *(f"--kernel={k}" for k in (*FIXED, *models)),
            "--accel",
            "tcg",
            "--json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    return {"proc": proc, "data": valid_json(path, "check") if path.exists() else None}


def _cell(data: dict, kernel: str, scenario: str) -> Result:
    [cell] = [c for c in data["matrix"]["cells"] if (c["kernel"], c["scenario"]) == (kernel, scenario)]
    [result] = cell["results"]
    return Result.from_dict(result)


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.timeout(6000)
@pytest.mark.parametrize("defect", list(DEFECTS))
def test_defect_present_on_its_model_only_with_its_fix(checked, defect):
    scenario, model = DEFECTS[defect]
    proc, data = checked["proc"], checked["data"]
    assert proc.returncode == Exit.OK, proc.stdout[-3000:] + proc.stderr[-3000:]
    answers = {a["kernel"]: a for a in data["answers"] if a["defect"] == defect}
    others = [m for _, m in DEFECTS.values() if m != model]  # each model reverts one fix: not this one
    assert set(answers) == {*FIXED, model, *others}
    assert (answers[model]["answer"], answers[model]["declared"]) == ("PRESENT", True), answers[model]
    fix = SCENARIOS[scenario].defect.fixes[0].id
    assert fix in answers[model]["fix"] and f"backport: {fix}" in proc.stdout
    for kernel in (*FIXED, *others):
        assert answers[kernel]["answer"] == "ABSENT", answers[kernel]
    # every other defect the model shows, stock shows too (the model reverts one fix), all declared
    present = {(a["defect"], a["kernel"]) for a in data["answers"] if a["answer"] == "PRESENT"}
    assert {d for d, k in present if k == model} - {defect} == {d for d, k in present if k == "stock"}, present
    assert all(a["declared"] for a in data["answers"] if a["answer"] == "PRESENT")


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.timeout(6000)
def test_reprotected_hugetlb_marker_maps_pfn_0_and_oopses_in_page_remove_rmap(checked):
    data = checked["data"]
    bad = _cell(data, "model-hugetlb-marker-reprotect", "wp-hugetlb-marker-reprotect")
    assert bad.verdict is Verdict.LEAK, (bad.reason, bad.evidence)
    assert bad.evidence["pagemap_after_protect"] == {"present": False, "uffd_wp": True, "exclusive": False, "pfn": 0}
    before = bad.evidence["pagemap_before_read"]
    assert before["present"] and before["pfn"] == 0, "the second protect turned the marker into a pfn-0 mapping"
    assert bad.evidence["read"] != ZEROS, "physical page 0, not the file's zeros"
    assert bad.evidence["punched"] is False and "never reaped" in bad.evidence["worker_end"], bad.evidence
    splat = bad.evidence["splat"]  # the worker's exit unmapped pfn 0: VM_BUG_ON_PAGE in page_remove_rmap()
    assert splat["kind"] == "OOPS" and any("page_remove_rmap" in line for line in splat["lines"]), splat
    assert any("__unmap_hugepage_range" in line for line in splat["lines"]), splat["lines"]
    for kernel in FIXED:
        good = _cell(data, kernel, "wp-hugetlb-marker-reprotect")
        assert good.verdict is Verdict.PASS, (kernel, good.reason)
        assert good.evidence["pagemap_before_read"] == bad.evidence["pagemap_after_protect"], "still a marker"
        assert good.evidence["read"] == ZEROS and good.evidence["read_after_punch"] == ZEROS
        assert good.evidence["worker_end"] == "exited with status 0" and "splat" not in good.evidence


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.timeout(6000)
def test_fork_without_event_fork_copies_the_marker_and_warns_in_copy_nonpresent_pte(checked):
    data = checked["data"]
    bad = _cell(data, "model-fork-marker-no-event", "fork-marker-no-event")
    assert bad.verdict is Verdict.WARN, (bad.reason, bad.evidence)
    assert bad.evidence["own_verdict"]["verdict"] == "PASS", "the child itself read the file's zeros"
    splat = bad.evidence["splat"]  # copy_nonpresent_pte() is inlined into copy_page_range() in this build
    warning = f"at ../tree/mm/memory.c:{_reverted_warn_line()} copy_page_range+"
    assert splat["kind"] == "WARN" and warning in splat["first"], (warning, splat["first"])
    assert any("dup_mmap+" in line for line in splat["lines"]), splat["lines"]
    assert bad.evidence["child_inherited_marker"] is True and bad.evidence["child_read"] == ZEROS
    for kernel in FIXED:
        good = _cell(data, kernel, "fork-marker-no-event")
        assert good.verdict is Verdict.PASS, (kernel, good.reason)
        assert good.evidence["pagemap_parent"]["uffd_wp"] and not good.evidence["pagemap_parent"]["present"]
        assert good.evidence["child_inherited_marker"] is False and good.evidence["child_read"] == ZEROS


def _reverted_warn_line() -> int:
    """The line of mm/memory.c the model's revert puts its WARN_ON_ONCE() on, read from the patch."""
    patch = REPO / "vm-images/patches/model-fork-marker-no-event"
    [path] = patch.glob("0001-*.patch")
    line = 0
    for text in path.read_text().splitlines():
        if text.startswith("@@"):
            line = int(text.split("+")[1].split(",")[0]) - 1
        elif line and not text.startswith("-"):
            line += 1
            if "WARN_ON_ONCE(!userfaultfd_wp(dst_vma))" in text:
                return line
    raise AssertionError(f"no WARN_ON_ONCE in {path}")


@pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp on shmem and hugetlb, pagemap pfns: root here")
def test_host_carries_neither_defect(tmp_path, huge_pages):
    path = tmp_path / "host.json"
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", *(s for s, _ in DEFECTS.values()), "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = {r.scenario: r for r in (Result.from_dict(d) for d in valid_json(path, "results")["results"])}
    hugetlb, fork = got["wp-hugetlb-marker-reprotect"], got["fork-marker-no-event"]
    assert hugetlb.verdict is Verdict.PASS and fork.verdict is Verdict.PASS, (hugetlb.reason, fork.reason)
    assert hugetlb.evidence["pagemap_before_read"]["uffd_wp"] and not hugetlb.evidence["pagemap_before_read"]["present"]
    assert hugetlb.evidence["read"] == ZEROS and hugetlb.evidence["punched"] is True
    assert fork.evidence["pagemap_parent"]["uffd_wp"] and fork.evidence["child_inherited_marker"] is False
