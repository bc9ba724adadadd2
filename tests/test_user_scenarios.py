# SPDX-License-Identifier: GPL-2.0-only
"""Users' own scenarios (issue 17): a file (--scenarios-from) or an installed distribution's entry point adds
rows to the table; they run under the same supervisor (HANG classified, rescued) on the host, in a guest,
in a matrix and from pytest; bad sources are one line, exit 2.

The scenario file is tests/user_scenarios/uffd_service.py (in the checkout, which every guest sees): a
uffd service thread answering MISSING faults with UFFDIO_COPY, and the same thread vmsplice()ing its own
write-protected page, which hangs where read-GUP forces COW (model-5.8).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from formats import valid_json  # tests/ is on sys.path (rootdir conftest, no package)

pytest_plugins = ["pytester"]
USER_FILE = Path(__file__).resolve().parent / "user_scenarios" / "uffd_service.py"
REAL_CACHE = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
USER_RECIPE = USER_FILE.with_name("my-model-5.8.toml")  # model-5.8's build, declaring the user's HANG
MINE = ("user-missing-copy", "user-service-vmsplice")


def uffdprobe(*args, env=None, timeout=300, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def results_of(path: Path) -> dict:
    return {r["scenario"]: r for r in valid_json(path, "results")["results"]}


def assert_one_line_exit_2(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def assert_rescued_hang(r: dict, *in_stack: str) -> dict:
    """HANG with the supervisor's evidence: a task in handle_userfault (state, wchan, kernel stack), the
    pending WP fault, the rescue through the handed-over uffd, and the scenario finishing after it."""
    assert r["verdict"] == "HANG", (r["verdict"], r["reason"])
    hang = r["evidence"]["hang"]
    blocked = hang["blocked_tasks"]
    assert blocked and blocked[0]["wchan"] == "handle_userfault", hang
    stack = "\n".join(blocked[0]["stack"])
    assert "handle_userfault" in stack and all(word in stack for word in in_stack), stack
    assert any(m["event"] == "pagefault" and "WP" in m["flags"] for m in hang["pending_uffd_messages"]), hang
    assert r["evidence"]["rescue"].startswith("unprotect [0x"), r["evidence"]["rescue"]
    assert r["evidence"]["after_rescue"]["verdict"] == "PASS", r["evidence"]["after_rescue"]
    return blocked[0]


def assert_from_user_file(r: dict) -> None:
    source = r["evidence"]["scenario_source"]
    assert source == {
        "kind": "file",
        "where": str(USER_FILE),
        "sha256": hashlib.sha256(USER_FILE.read_bytes()).hexdigest(),
    }, source


# --- the host -------------------------------------------------------------------------------------------


@pytest.mark.root
def test_a_user_file_runs_under_the_supervisor_on_the_host(tmp_path, kf, live_children):
    """The PASS scenarios pass on the running kernel (no forced COW here); the file's self-deadlock is a
    real block in handle_userfault: HANG with evidence, rescued, exit 0 because it is declared."""
    out = tmp_path / "r.json"
    proc = uffdprobe(
        "run",
        "--scenarios-from",
        str(USER_FILE),
        *MINE,
        "user-self-deadlock",
        "--json",
        str(out),
        "--expect",
        "user-self-deadlock=HANG",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = results_of(out)
    assert got["user-missing-copy"]["verdict"] == "PASS", got["user-missing-copy"]["reason"]
    assert got["user-missing-copy"]["evidence"]["faults"] == 16  # the table's default: one per page
    assert got["user-service-vmsplice"]["verdict"] == "PASS", got["user-service-vmsplice"]["reason"]
    assert_rescued_hang(got["user-self-deadlock"], "handle_mm_fault")
    for r in got.values():
        assert_from_user_file(r)
    assert "declared, so expected: user-self-deadlock[anon-4k] HANG" in proc.stdout
    assert not live_children()


@pytest.mark.root
def test_parameters_and_listing_of_a_user_file(tmp_path, kf):
    """--param reaches a user scenario's defaults; `list` shows where each user scenario comes from;
    a test_only row is left out of the default plan, as a built-in self-test is."""
    out = tmp_path / "r.json"
    proc = uffdprobe(
        "run", "--scenarios-from", str(USER_FILE), "user-missing-copy", "--param", "pages=3", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert results_of(out)["user-missing-copy"]["evidence"]["faults"] == 3
    listing = uffdprobe("list", "--scenarios-from", str(USER_FILE)).stdout
    assert "user-service-vmsplice\n  question: Can a uffd service thread" in listing
    assert f"  from: --scenarios-from {USER_FILE}" in listing and "user-self-deadlock" not in listing
    assert "user-self-deadlock" in uffdprobe("list", "--all", "--scenarios-from", str(USER_FILE)).stdout


def fake_distribution(site: Path, entry_points: str, modules: dict) -> Path:
    """A distribution as pip leaves it: NAME-VERSION.dist-info with METADATA and entry_points.txt, and
    its modules, in a folder that goes on sys.path (PYTHONPATH)."""
    info = site / "uffd_demo_scenarios-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: uffd-demo-scenarios\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    for name, text in modules.items():
        (site / name).write_text(text)
    return site


MORE_ROWS = '''import dataclasses
from uffd_demo import SCENARIOS as ROWS

def rows():
    """A callable entry point: yields Scenario rows."""
    yield dataclasses.replace(ROWS[0], name="user-missing-copy-bis", defaults={"pages": 2})
'''


@pytest.mark.root
def test_an_entry_point_of_an_installed_distribution(tmp_path, kf):
    """The entry point group `uffdprobe.scenarios`, found by importlib.metadata on sys.path: one entry
    naming a module (its SCENARIOS), one naming a callable that yields rows; the same file named again
    with --scenarios-from is the same scenarios, not a clash."""
    site = fake_distribution(
        tmp_path / "site",
        "[uffdprobe.scenarios]\ndemo = uffd_demo\nmore = uffd_more:rows\n",
        {"uffd_demo.py": USER_FILE.read_text(), "uffd_more.py": MORE_ROWS},
    )
    env = {"PYTHONPATH": str(site)}
    listing = uffdprobe("list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert (
        "  from: entry point demo = uffd_demo (uffd-demo-scenarios 1.0) in group uffdprobe.scenarios" in listing.stdout
    ), listing.stdout
    assert "user-missing-copy-bis\n" in listing.stdout
    out = tmp_path / "r.json"
    proc = uffdprobe("run", "user-missing-copy", "user-missing-copy-bis", "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    got = results_of(out)
    assert got["user-missing-copy"]["verdict"] == got["user-missing-copy-bis"]["verdict"] == "PASS"
    assert got["user-missing-copy-bis"]["evidence"]["faults"] == 2
    assert got["user-missing-copy"]["evidence"]["scenario_source"]["kind"] == "entry point"
    again = uffdprobe("run", "--scenarios-from", str(site / "uffd_demo.py"), "user-missing-copy", env=env)
    assert again.returncode == 0, again.stderr


def test_the_quick_look_for_the_group_agrees_with_importlib_metadata(tmp_path):
    """sources.may_declare_the_group() reads what importlib.metadata would before the CLI pays for the
    real scan: False only where the real scan finds nothing. Each pair is asked of a fresh interpreter
    (importlib.metadata keeps what it read of a folder), on exactly the sys.path given."""
    import zipfile

    def both(*path, finder=False):
        code = (
            "import importlib.machinery, importlib.metadata, json, sys\n"
            "from uffdprobe.scenarios import sources\n"
            "class Finder:\n"
            "    @staticmethod\n"
            "    def find_distributions(context=None):\n"
            "        return iter(())\n"
            f"sys.path[:] = {[str(p) for p in path]!r}\n"
            f"sys.meta_path[:] = {'[Finder, ' if finder else '['}importlib.machinery.PathFinder]\n"
            "found = importlib.metadata.entry_points().select(group=sources.ENTRY_POINT_GROUP)\n"
            "print(json.dumps([sources.may_declare_the_group(), bool(found)]))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return tuple(json.loads(proc.stdout))

    other = fake_distribution(tmp_path / "other", "[console_scripts]\nuffd-demo = uffd_demo:main\n", {})
    assert both(other, tmp_path / "missing") == (False, False)
    ours = fake_distribution(tmp_path / "ours", "[uffdprobe.scenarios]\ndemo = uffd_demo\n", {})
    assert both(ours, other) == (True, True)  # one name: the first on the path is the distribution
    egg = tmp_path / "demo.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: uffd-egg\nVersion: 1.0\n")
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[uffdprobe.scenarios]\ndemo = uffd_demo\n")
    assert both(other, egg) == (True, True)
    archive = tmp_path / "site.zip"  # a zip on sys.path: not looked into, the real scan decides
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("uffd_demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: uffd-demo\nVersion: 1.0\n")
    assert both(other, archive) == (True, False)
    assert both(other, finder=True) == (True, False)  # another finder of distributions: the real scan decides


def test_a_command_imports_no_metadata_reader_when_nothing_declares_the_group():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "uffdprobe", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[2].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "uffdprobe.scenarios.sources" in imported and "importlib.metadata" not in imported


# --- bad sources: one line, exit 2, nothing run --------------------------------------------------------

ROW = '''from uffdprobe.scenarios.api import Outcome, Scenario, Verdict
SCENARIOS = [Scenario({name!r}, "Does it?", lambda ctx: Outcome(Verdict.PASS, "yes"), needs=(), memory={memory!r})]
'''
BAD_FILES = {
    "clash with a built-in": (
        {"a.py": ROW.format(name="wp-gup-vmsplice", memory=("anon-4k",))},
        ["a.py", "clashes with uffdprobe's built-in 'wp-gup-vmsplice'"],
    ),
    "clash between two files": (
        {"a.py": ROW.format(name="mine", memory=("anon-4k",)), "b.py": ROW.format(name="mine", memory=("anon-4k",))},
        ["scenario 'mine' comes from both --scenarios-from", "a.py", "b.py"],
    ),
    "import error": (
        {"a.py": "import os\nimport uffdprobe_no_such_module\n"},
        ["a.py: cannot import it: ModuleNotFoundError: No module named 'uffdprobe_no_such_module' (a.py line 2)"],
    ),
    "exception at import": (
        {"a.py": "x = 1\nraise RuntimeError('broken on purpose')\n"},
        ["a.py: cannot import it: RuntimeError: broken on purpose (a.py line 2)"],
    ),
    "syntax error": ({"a.py": "SCENARIOS = [\n"}, ["a.py: cannot import it: SyntaxError", "(a.py line 1)"]),
    "no SCENARIOS": ({"a.py": "x = 1\n"}, ["a.py: defines no SCENARIOS"]),
    "a memory kind no kernel offers": (
        {"a.py": ROW.format(name="mine", memory=("anon-2m",))},
        ["a.py: scenario 'mine': memory must be a non-empty tuple of anon-4k"],
    ),
    "a row that is not a Scenario": (
        {"a.py": "SCENARIOS = [{'name': 'mine'}]\n"},
        ["a.py: SCENARIOS holds a dict, not a Scenario"],
    ),
    "no such file": ({}, ["a.py: no such file"]),
    "os._exit(0) at import": (
        {"a.py": "import os\nos._exit(0)\n"},
        ["a.py: importing it ended the process (exit status 0"],
    ),
    "sys.exit(0) at import": ({"a.py": "import sys\nsys.exit(0)\n"}, ["a.py: cannot import it: SystemExit"]),
    "a crash (SIGSEGV) at import": (
        {"a.py": "import ctypes\nctypes.string_at(0)\n"},
        ["a.py: importing it crashed the interpreter (SIGSEGV)"],
    ),
}


@pytest.mark.reliability(
    "a --scenarios-from file that clashes (with a built-in or another file), fails to "
    "import, defines no or bad SCENARIOS, or does not exist",
    "one line naming the file and the cause (the exception and its line), exit 2, no traceback, nothing run",
)
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_scenario_file_is_one_line_exit_2(tmp_path, case):
    files, words = BAD_FILES[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = [a for name in (list(files) or ["a.py"]) for a in ("--scenarios-from", str(tmp_path / name))]
    out = tmp_path / "r.json"
    for command in (["run", "--json", str(out)], ["list"], ["matrix", "--kernel", "host", "--json", str(out)]):
        assert_one_line_exit_2(uffdprobe(*command, *args), *words)
        assert not out.exists()


@pytest.mark.reliability(
    "a --scenarios-from file that hangs at import (sleeps forever)",
    "one line saying the import did not finish within the bound, exit 2, nothing run, no child left",
)
def test_a_scenario_file_that_hangs_at_import(tmp_path, live_children):
    (tmp_path / "a.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    out = tmp_path / "r.json"
    # The real CLI in a real process, its import bound (import_trial.check's `bound`, 30 s by default) given as
    # 2 s: what is asserted is that the bound ends the hang, not how long the bound is.
    bound = 2.0
    cli = (
        "import runpy\nfrom uffdprobe.scenarios import import_trial\n"
        f"import_trial.check.__defaults__ = ({bound},)\n"
        "runpy.run_module('uffdprobe', run_name='__main__', alter_sys=True)\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", cli, "run", "--scenarios-from", str(tmp_path / "a.py"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_exit_2(proc, f"a.py: importing it did not finish within {bound:g} s")
    assert time.monotonic() - started < bound + 30
    assert not out.exists()


@pytest.mark.reliability(
    "an installed entry point (group uffdprobe.scenarios) whose module raises on import, "
    "or whose scenario clashes with a --scenarios-from file",
    "one line naming the entry point, its distribution and the exception, or both sources, exit 2, nothing run",
)
def test_a_bad_entry_point_is_one_line_exit_2(tmp_path):
    site = fake_distribution(
        tmp_path / "site",
        "[uffdprobe.scenarios]\nbroken = uffd_broken\n",
        {"uffd_broken.py": "raise ImportError('needs libfoo')\n"},
    )
    line = assert_one_line_exit_2(
        uffdprobe("run", env={"PYTHONPATH": str(site)}),
        "entry point broken = uffd_broken (uffd-demo-scenarios 1.0)",
        "cannot import it: ImportError: needs libfoo",
    )
    assert "uffd_broken.py line 1" in line
    (site / "uffd_broken.py").write_text(ROW.format(name="mine", memory=("anon-4k",)))
    (tmp_path / "mine.py").write_text(ROW.format(name="mine", memory=("anon-4k",)))
    assert_one_line_exit_2(
        uffdprobe("run", "--scenarios-from", str(tmp_path / "mine.py"), env={"PYTHONPATH": str(site)}),
        "scenario 'mine' comes from both entry point broken",
        "mine.py",
    )


@pytest.mark.reliability(
    "a --scenarios-from file under /tmp (which the guest covers) with run --kernel, "
    "matrix or the plugin's --uffd-kernel naming a booted kernel",
    "refused before any build or boot: one line naming the file and /tmp, exit 2 "
    "(pytest: a usage error), no QEMU started",
)
def test_a_file_the_guest_cannot_see_is_refused_up_front(tmp_path, pytester, live_children):
    hidden = tmp_path / "mine.py"
    assert str(hidden).startswith("/tmp/")
    shutil.copy(USER_FILE, hidden)
    for command in (["run", "--kernel", "model-5.8"], ["matrix", "--kernel", "host", "--kernel", "model-5.8"]):
        proc = uffdprobe(*command, "--scenarios-from", str(hidden), timeout=60)
        assert_one_line_exit_2(proc, f"--scenarios-from {hidden}", "is under /tmp, which the guest covers")
        assert "[vm]" not in proc.stdout + proc.stderr and "building" not in proc.stderr
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--uffd-kernel", "model-5.8", "--uffd-scenarios-from", str(hidden), timeout=120
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--scenarios-from {hidden}: * is under /tmp, which the guest covers*"])
    assert not live_children()


# --- guests, a matrix, pytest ---------------------------------------------------------------------------


@pytest.mark.vm
@pytest.mark.parametrize("kernel", ["model-5.8", "stock"])
def test_a_user_file_in_a_guest(tmp_path, kernel, live_children):
    """run --kernel K loads the same file in the guest: model-5.8 hangs the service thread in vmsplice's
    read-GUP (forced COW: do_wp_page under __get_user_pages), rescued, and the scenario ends; stock passes."""
    out = tmp_path / "r.json"
    expect = ["--expect", "user-service-vmsplice=HANG"] if kernel == "model-5.8" else []
    proc = uffdprobe(
        "run", "--kernel", kernel, "--scenarios-from", str(USER_FILE), *MINE, *expect, "--json", str(out), timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    got = results_of(out)
    for r in got.values():
        assert r["kernel"]["release"].startswith("6.1."), r["kernel"]
        assert_from_user_file(r)
    assert got["user-missing-copy"]["verdict"] == "PASS", got["user-missing-copy"]["reason"]
    if kernel == "stock":
        assert got["user-service-vmsplice"]["verdict"] == "PASS", got["user-service-vmsplice"]["reason"]
    else:
        task = assert_rescued_hang(got["user-service-vmsplice"], "do_wp_page", "__get_user_pages", "vmsplice")
        assert task["comm"] == "uffd-service" and task["state"] == "D", task
    assert not live_children()


@pytest.mark.vm
def test_a_user_file_in_a_matrix(tmp_path, live_children):
    """host, model-5.8 and a user's recipe of the same kernel side by side: PASS, PASS | PASS, HANG | PASS,
    HANG, the model-5.8 HANG declared by --expect, the other by the recipe's [expect] (so exit 0), with
    the evidence in the cells."""
    out = tmp_path / "m.json"
    proc = uffdprobe(
        "matrix",
        "--kernel",
        "host",
        "--kernel",
        "model-5.8",
        "--kernel",
        f"mine={USER_RECIPE}",
        "--scenarios-from",
        str(USER_FILE),
        *[a for s in MINE for a in ("--scenario", s)],
        "--expect",
        "model-5.8:user-service-vmsplice=HANG",
        "--json",
        str(out),
        "--results-dir",
        str(tmp_path / "work"),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    cells = {(c["kernel"], c["scenario"]): c for c in valid_json(out, "matrix")["cells"]}
    assert {k: c["verdict"] for k, c in cells.items()} == {
        ("host", "user-missing-copy"): "PASS",
        ("host", "user-service-vmsplice"): "PASS",
        ("model-5.8", "user-missing-copy"): "PASS",
        ("model-5.8", "user-service-vmsplice"): "HANG",
        ("mine", "user-missing-copy"): "PASS",
        ("mine", "user-service-vmsplice"): "HANG",
    }
    for kernel in ("model-5.8", "mine"):
        cell = cells[(kernel, "user-service-vmsplice")]
        assert cell["expected"] == "HANG" and cell["mark"] == "expected", cell
        assert_rescued_hang(cell["results"][0], "do_wp_page")
    assert "user-service-vmsplice" in proc.stdout
    assert not live_children()


PLUGIN_TESTS = '''
import pytest

@pytest.mark.uffd_scenario("user-missing-copy")
def test_copy(uffd_verdict):
    uffd_verdict.check()

@pytest.mark.uffd_scenario("user-service-vmsplice")
def test_eviction_splice(uffd_verdict):
    uffd_verdict.check()
'''


@pytest.mark.root
def test_the_plugin_finds_user_scenarios_on_the_host(pytester, monkeypatch, tmp_path, kf):
    """@pytest.mark.uffd_scenario("user-...") with --uffd-scenarios-from, and through the entry point."""
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--uffd-scenarios-from", str(USER_FILE), timeout=240
    )
    result.stdout.fnmatch_lines(["*test_copy[[]host[]] PASSED*", "*test_eviction_splice[[]host[]] PASSED*"])
    assert result.ret == 0
    site = fake_distribution(
        tmp_path / "site", "[uffdprobe.scenarios]\ndemo = uffd_demo\n", {"uffd_demo.py": USER_FILE.read_text()}
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=240)
    result.stdout.fnmatch_lines(["*test_copy[[]host[]] PASSED*", "*test_eviction_splice[[]host[]] PASSED*"])


@pytest.mark.vm
def test_the_plugin_runs_user_scenarios_on_host_and_model_5_8(pytester, monkeypatch, live_children):
    """One boot of model-5.8 for both tests; the declared HANG is an xfail(strict) with the evidence."""
    monkeypatch.setenv("XDG_CACHE_HOME", REAL_CACHE)
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-v",
        "-rxX",
        "--uffd-kernel",
        "host",
        "--uffd-kernel",
        "model-5.8",
        "--uffd-scenarios-from",
        str(USER_FILE),
        "--uffd-expect",
        "model-5.8:user-service-vmsplice=HANG",
        "--junitxml=out.xml",
        timeout=900,
    )
    result.stdout.fnmatch_lines_random(
        [
            "*test_copy[[]host[]] PASSED*",
            "*test_eviction_splice[[]host[]] PASSED*",
            "*test_copy[[]model-5.8[]] PASSED*",
            "*test_eviction_splice[[]model-5.8[]] XFAIL*",
        ]
    )
    assert result.ret == 0
    xml = (pytester.path / "out.xml").read_text()
    assert "model-5.8 user-service-vmsplice(anon-4k): HANG" in xml and "wchan: handle_userfault" in xml
    assert not live_children()


@pytest.mark.root
def test_the_user_guide_example_runs_as_written(tmp_path, kf):
    """The user guide's "Your own scenarios" file, exactly as printed there, runs and passes (with --param)."""
    readme = (Path(__file__).resolve().parents[1] / "docs" / "user-guide.md").read_text()
    section = readme.split("## Your own scenarios", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert example.startswith("# my_scenarios.py\n")
    (tmp_path / "my_scenarios.py").write_text(example)
    out = tmp_path / "r.json"
    proc = uffdprobe(
        "run",
        "--scenarios-from",
        "my_scenarios.py",
        "my-missing-copy",
        "--param",
        "fill=7",
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = results_of(out)["my-missing-copy"]
    assert r["verdict"] == "PASS" and len(r["evidence"]["faults"]) == 1 and r["params"]["fill"] == 7, r


@pytest.mark.reliability(
    "an entry point of a distribution on a PYTHONPATH under /tmp, with run --kernel",
    "refused before any build or boot: one line naming the entry point and /tmp, exit 2",
)
def test_an_entry_point_the_guest_cannot_see_is_refused(tmp_path):
    site = fake_distribution(
        tmp_path / "site", "[uffdprobe.scenarios]\ndemo = uffd_demo\n", {"uffd_demo.py": USER_FILE.read_text()}
    )
    proc = uffdprobe("run", "--kernel", "model-5.8", env={"PYTHONPATH": str(site)}, timeout=60)
    assert_one_line_exit_2(proc, "entry point demo = uffd_demo", "is under /tmp, which the guest covers")
