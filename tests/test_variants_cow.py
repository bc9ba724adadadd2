# SPDX-License-Identifier: GPL-2.0-only
"""The COW questions in both directions, on 4 KiB pages and THPs, in every 2020 variant (real builds, boots).

Issue 21: real v5.8.1 without forced COW and v5.8.1 + FOLL_BREAK_COW v3 leak on a THP as on a small
page, and no 2020 kernel closes the reverse direction; the models must say the same.
"""

import subprocess
import sys

import pytest

from uffdprobe.results import expect
from uffdprobe.kbuild import recipes
from uffdprobe.verdicts import Result, Verdict
from formats import valid_json  # tests/ is on sys.path (rootdir conftest, no package)

pytestmark = pytest.mark.timeout(3600)  # may build the recipes cold before five boots
VARIANTS = ["stock", "model-5.7", "model-5.8", "model-5.8-break-cow", "model-5.8-break-cow-fixup"]
SCENARIOS = ("cow-leak", "cow-leak-reverse")
KINDS = ("anon-4k", "anon-thp")


@pytest.fixture(scope="module")
def cow(tmp_path_factory):
    """One boot per variant asking both COW questions on both memory kinds; verdicts by recipe name."""
    out = {}
    for name in VARIANTS:
        path = tmp_path_factory.mktemp(name) / "results.json"
        proc = subprocess.run(
            [sys.executable, "-m", "uffdprobe", "run", "--kernel", name, *SCENARIOS, "--json", str(path)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, f"{name}: exit {proc.returncode} (every verdict declared)\n{proc.stderr[-3000:]}"
        results = [Result.from_dict(d) for d in valid_json(path, "results")["results"]]
        assert all(r.kernel.get("release", "").startswith("6.1.") for r in results)
        out[name] = {(r.scenario, r.memory): r for r in results}
    return out


def declared(recipe_expect: dict, scenario: str, memory: str):
    """The recipe's declaration for one cell: "SCENARIO/MEMORY" first, then "SCENARIO"."""
    return recipe_expect.get(f"{scenario}/{memory}", recipe_expect.get(scenario))


def verdict(cow, name, scenario, memory) -> Verdict:
    r = cow[name][(scenario, memory)]
    assert r.verdict is not Verdict.SKIP, f"{name} {scenario}[{memory}] skipped: {r.reason}"
    return r.verdict


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("name", VARIANTS)
def test_cow_cells_are_declared_and_met(cow, name):
    want = recipes.load(name).expect
    for scenario in SCENARIOS:
        for memory in KINDS:
            r = cow[name][(scenario, memory)]
            w = declared(want, scenario, memory)
            assert w is not None, f"{name}: {scenario}[{memory}] is not declared in its recipe"
            assert expect.matches(w, r.verdict), (
                f"{name} {scenario}[{memory}]: declared {w}, got {r.verdict.value}: {r.reason}"
            )


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize(
    "name,leaks", [("model-5.7", True), ("model-5.8-break-cow", True), ("stock", False), ("model-5.8", False)]
)
def test_thp_cow_leak_answers_as_the_modelled_kernel(cow, name, leaks):
    thp = verdict(cow, name, "cow-leak", "anon-thp")
    assert (thp is Verdict.LEAK) is leaks, cow[name][("cow-leak", "anon-thp")].reason
    assert thp is verdict(cow, name, "cow-leak", "anon-4k"), "a THP must answer as a small page did in 2020"


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize("memory", KINDS)
def test_reverse_leak_found_on_model_5_8_not_on_stock(cow, memory):
    leak = cow["model-5.8"][("cow-leak-reverse", memory)]
    assert leak.verdict is Verdict.LEAK, leak.reason
    assert leak.evidence["parent_read"].startswith("THE CHILD WROTE THIS")
    assert verdict(cow, "stock", "cow-leak-reverse", memory) is Verdict.PASS
    assert verdict(cow, "model-5.8", "cow-leak", memory) is Verdict.PASS, "the forced COW closed only one direction"
