# SPDX-License-Identifier: GPL-2.0-only
"""Scenarios through the real supervisor on the running kernel (which carries upstream's fix)."""

import json
import os
import subprocess
import sys

import pytest

from formats import valid_json, valid_jsonl
from uffdprobe.uffd import odirect
from uffdprobe.supervise import supervisor
from uffdprobe.scenarios.racy import TRIES
from uffdprobe.scenarios.registry import SCENARIOS, select, skip_reason
from uffdprobe.verdicts import Verdict

PUBLIC = [(s.name, m) for s in select([]) for m in s.memory]


@pytest.fixture(scope="module")
def target():
    return odirect.find_target()


def run(name, memory, kf, target, **params):
    s = SCENARIOS[name]
    skip = skip_reason(s, memory, kf, target)
    if skip:
        pytest.skip(skip)
    return supervisor.run_one(s, memory, {**s.defaults, **params}, kf.kernel, supervisor.Limits(), target)


@pytest.mark.parametrize("name,memory", PUBLIC, ids=[f"{n}[{m}]" for n, m in PUBLIC])
def test_scenario_passes_on_fixed_kernel(name, memory, kf, target, live_children, host_swap):
    # a racy row on two tries: its full budget on the host is test_foll_force_cow's question
    res = run(name, memory, kf, target, **({TRIES: 2} if SCENARIOS[name].race else {}))
    assert res.verdict in (Verdict.PASS, Verdict.SKIP), (res.reason, res.evidence)
    assert res.kernel["release"] == os.uname().release
    assert res.evidence["exit"]["exit"] == 0
    assert not live_children()


@pytest.mark.reliability(
    "a scenario task blocked forever on a uffd fault",
    "HANG with state, wchan, kernel stack and the pending fault; rescued; reaped",
)
def test_self_deadlock_is_hang_with_evidence_and_rescued(kf, target, live_children):
    res = run("selftest-self-deadlock", "anon-4k", kf, target)
    assert res.verdict is Verdict.HANG, res.reason
    hang = res.evidence["hang"]
    assert hang["pending_uffd_messages"], "the unanswered WP fault must be pending on the uffd"
    [msg] = hang["pending_uffd_messages"]
    assert msg["event"] == "pagefault" and set(msg["flags"]) == {"WRITE", "WP"}
    assert int(msg["address"], 16) % 4096 == 0 and msg["address"].startswith("0x")
    task = hang["blocked_tasks"][0]
    assert task["state"] in ("S", "D")
    if isinstance(task["stack"], list):
        assert any("handle_userfault" in frame for frame in task["stack"])
    assert res.evidence["rescue"].startswith("unprotect")
    assert res.evidence["after_rescue"]["verdict"] == "PASS", "the rescued write must complete"
    assert res.evidence["exit"] == {"exit": 0, "killed": False}
    assert not live_children()


def test_hang_threshold_is_configurable(kf, target):
    s = SCENARIOS["selftest-self-deadlock"]
    res = supervisor.run_one(s, "anon-4k", {}, kf.kernel, supervisor.Limits(hang_s=0.5), target)
    assert res.verdict is Verdict.HANG and res.duration_s < 2.0


def test_leak_decided_from_real_shared_data(kf, target):
    """A MAP_SHARED page really is shared: the same decision code must call that LEAK."""
    res = run("cow-leak", "anon-4k", kf, target, selftest_shared_page=True)
    assert res.verdict is Verdict.LEAK, res.reason
    assert res.evidence["child_read"].startswith("THIS IS SECRET")


def test_reverse_leak_decided_from_real_shared_data(kf, target):
    """cow-leak-reverse on a MAP_SHARED page: the child's write really reaches the parent's pipe."""
    res = run("cow-leak-reverse", "anon-4k", kf, target, selftest_shared_page=True)
    assert res.verdict is Verdict.LEAK, res.reason
    assert res.evidence["parent_read"].startswith("THE CHILD WROTE THIS")


def test_wp_lost_decided_from_a_real_untrapped_write(kf, target, need_wp):
    res = run("wp-real-write", "anon-4k", kf, target, selftest_unprotect_first=True)
    assert res.verdict is Verdict.WP_LOST, res.reason


@pytest.mark.reliability("no O_DIRECT target anywhere", "SKIP with the probed reason, never PASS")
def test_odirect_skips_without_a_target(kf):
    s = SCENARIOS["wp-gup-odirect"]
    assert "O_DIRECT" in skip_reason(s, "anon-4k", kf, None)


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "uffdprobe", *args], capture_output=True, text=True, timeout=300, **kw)


def test_cli_run_json_ktap_and_stream(tmp_path, kf):
    out = tmp_path / "r.json"
    stream = tmp_path / "stream"
    proc = _cli("run", "wp-gup-vmsplice", "cow-leak", "--json", str(out), "--ktap", "-", "--results-dir", str(stream))
    assert proc.returncode == 0, proc.stderr
    results = valid_json(out, "results")["results"]
    assert {(r["scenario"], r["memory"]) for r in results} >= {("wp-gup-vmsplice", "anon-4k"), ("cow-leak", "anon-4k")}
    assert all({"scenario", "memory", "verdict", "evidence", "kernel"} <= set(r) for r in results)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["KTAP version 1", "1..1"] and lines[-1] == "ok 1 host"
    leaves = [line.strip() for line in lines if line.startswith("      ok ")]  # kernel > scenario > memory
    assert len(leaves) == len(results)
    assert len(valid_jsonl(stream / "verdicts.jsonl")) == len(results)


def test_cli_exit_1_on_kernel_problem(kf):
    proc = _cli("run", "selftest-self-deadlock", "--hang-timeout", "0.5")
    assert proc.returncode == 1
    assert "HANG" in proc.stdout


def _bad(argv, needle, case):
    return pytest.param(
        argv, needle, id=case, marks=pytest.mark.reliability(case, "one-line error naming the fix, exit 2, nothing run")
    )


@pytest.mark.parametrize(
    "argv,needle",
    [
        _bad(["run", "no-such-scenario"], "unknown scenario", "unknown scenario name"),
        _bad(["run", "cow-leak", "--param", "nope"], "KEY=VALUE", "malformed --param"),
        _bad(["run", "cow-leak", "--param", "bogus=1"], "has a parameter bogus", "unknown scenario parameter"),
        _bad(["run", "umap-evict", "--param", "data_pages=0"], "whole number", "zero size parameter"),
        _bad(["run", "umap-evict", "--param", "data_pages=-5"], "whole number", "negative size parameter"),
        _bad(["run", "umap-evict", "--param", "data_pages=99999999"], "whole number", "absurdly large page count"),
        _bad(["run", "--hang-timeout", "-1"], "more than 0", "negative hang timeout"),
        _bad(["run", "--odirect-target", "/proc"], "O_DIRECT", "O_DIRECT target that refuses O_DIRECT"),
        _bad(["run", "--json", "/proc/no/such.json"], "cannot write", "unwritable --json path"),
        _bad(["run", "--kernel", "/etc"], "is a directory", "kernel path that is a directory"),
        _bad(["run", "--kernel", "no-such-kernel-or-recipe"], "not a recipe", "unknown kernel name"),
        _bad(["run", "--append", "quiet"], "add --kernel", "--append without a kernel to boot"),
        _bad(
            ["run", "--kernel", "stock", "--append", "init=/bin/sh"],
            "harness's own",
            "--append overriding the harness's init",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(argv, needle):
    proc = _cli(*argv)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("uffdprobe")]) == 1


def test_cli_list_and_features():
    listing = _cli("list")
    assert listing.returncode == 0
    for name in (
        "wp-gup-vmsplice",
        "wp-gup-odirect",
        "cow-leak",
        "cow-leak-reverse",
        "wp-cow-inherit",
        "wp-real-write",
    ):
        assert name in listing.stdout
    assert "selftest-self-deadlock" not in listing.stdout
    feats = _cli("features", "--json", "-")
    assert feats.returncode == 0
    data = json.loads(feats.stdout)
    assert data["kernel"]["release"] == os.uname().release


def test_odirect_on_a_loop_device(kf):
    """The fallback target when no directory takes O_DIRECT: a loop device, detached afterwards."""
    with odirect.loop_device() as device:
        if device is None:
            pytest.skip("no root or no losetup here")
        res = run("wp-gup-odirect", "anon-4k", kf, device)
        assert res.verdict is Verdict.PASS, res.reason
        assert res.evidence["odirect_target"] == device
    listed = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME"], capture_output=True, text=True, timeout=30
    ).stdout.split()
    assert device not in listed


@pytest.mark.reliability("THP denied to the process while the system offers it", "SKIP with the reason")
def test_a_precondition_probed_in_the_child_is_skip(kf, tmp_path):
    """THP offered system-wide but denied to this process for real (prctl PR_SET_THP_DISABLE, 41):
    the child finds no huge page behind its range, and that is SKIP with the reason, not ERROR."""
    import uffdprobe.scenarios.memkinds as memkinds

    if memkinds.unavailable("anon-thp"):
        pytest.skip(memkinds.unavailable("anon-thp"))
    out = tmp_path / "r.json"
    code = (
        "import ctypes, runpy, sys; assert ctypes.CDLL(None).prctl(41, 1, 0, 0, 0) == 0; "
        f"sys.argv = ['uffdprobe', 'run', 'wp-gup-vmsplice', '--memory', 'anon-thp', '--json', '{out}']; "
        "runpy.run_module('uffdprobe', run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [res] = valid_json(out, "results")["results"]
    assert res["verdict"] == "SKIP" and "THP" in res["reason"]


@pytest.mark.reliability(
    "a watched call that never returns, task busy in the kernel, no uffd fault",
    "HANG (never returns) with the task's state sampled; killed and reaped",
)
def test_kernel_spin_is_hang_then_killed(kf, target, live_children):
    s = SCENARIOS["selftest-kernel-spin"]
    limits = supervisor.Limits(hang_s=0.5, spin_s=3.0, rescue_s=2.0)
    res = supervisor.run_one(s, "anon-4k", dict(s.defaults), kf.kernel, limits, target)
    assert res.verdict is Verdict.HANG, res.reason
    assert "never returned" in res.reason
    assert set(res.evidence["hang"]["states_sampled"]) <= {"R", "D"}
    assert res.evidence["exit"]["killed"] is True
    assert res.duration_s < 30
    assert not live_children()


def test_built_in_scenarios_use_the_public_watched():
    """The built-ins announce blocking calls through scenarios.api.watched (unwatched however the call
    ends), as users are told to; ctx.watch()/unwatch() by hand is left to watched itself."""
    import ast
    from pathlib import Path
    from uffdprobe.scenarios import api, context

    assert api.watched is context.watched
    by_hand = []
    for path in Path(context.__file__).parent.glob("*.py"):
        if path.name == "context.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("watch", "unwatch")
                and isinstance(node.value, ast.Name)
                and node.value.id == "ctx"
            ):
                by_hand.append(f"{path.name}:{node.lineno}")
    assert not by_hand
