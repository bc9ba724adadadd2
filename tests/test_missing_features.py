# SPDX-License-Identifier: GPL-2.0-only
"""Kernels that lack what the scenarios need: every scenario that cannot run is SKIP with the probed
reason, nothing that did not run is PASS, and the run still exits 0 (issue 9).

Both kernels are recipes built from Debian's linux-source-6.1 (`no-userfaultfd`: CONFIG_USERFAULTFD
off, a full rebuild in its own workspace; `no-uffd-wp`: stock plus a fs/userfaultfd.c patch), booted
under QEMU with `uffdprobe run --kernel NAME --json F` over every public scenario and memory kind.
"""

import errno
import json
import shutil
import subprocess
import sys

import pytest

from formats import valid_json

from uffdprobe.results import expect
from uffdprobe.kbuild import build as kbuild, cache as kbuild_cache, config as kbuild_config, recipes
from uffdprobe.cli import main as cli
from uffdprobe.exitcodes import Exit
from uffdprobe.scenarios.registry import select
from uffdprobe.verdicts import Result, Verdict
from uffdprobe.vm.boot import boot

from test_kbuild import _need_toolchain  # tests/ is on sys.path (rootdir conftest, no package)

pytestmark = [
    pytest.mark.build,  # every test here builds a kernel (or takes it from the cache)
    pytest.mark.timeout(3600),
]  # no-userfaultfd may be built cold (a full kernel build) first
PY = sys.executable  # the guest sees the host root, so the venv's python runs there too
PLANNED = {(s.name, m) for s in select([]) for m in s.memory}
NEEDS_WP = {s.name for s in select([]) if "uffd-wp" in s.needs}
NEEDS_NOTHING = {s.name for s in select([]) if not s.needs}  # fork + vmsplice only: cow-leak, cow-leak-reverse
NEEDS_ONLY_UFFD = {s.name for s in select([]) if s.needs == ("uffd",)}  # continue-fallocated (MINOR, no WP), ...
NEWER_THAN_6_1 = {
    "move-basic",
    "move-swapcache",
    "move-large-folio",
    "move-pmd-migration",
    "pagemap-scan-written",
    "pagemap-scan-zapped",
    "pagemap-scan-pmd-hole",
    "pagemap-scan-hugetlb-hole",
}  # 6.7+ and 6.8+ interfaces
_RUNS: dict = {}


def run_recipe(name: str, tmp_path_factory):
    """`uffdprobe run --kernel NAME --json F` once per session: (exit status, results, stderr)."""
    if name not in _RUNS:
        _need_toolchain()
        path = tmp_path_factory.mktemp(name) / "results.json"
        proc = subprocess.run(
            [PY, "-m", "uffdprobe", "run", "--kernel", name, "--json", str(path)],
            capture_output=True,
            text=True,
            timeout=3000,
        )
        results = [Result.from_dict(d) for d in valid_json(path, "results")["results"]] if path.exists() else []
        _RUNS[name] = (proc.returncode, results, proc.stderr)
    return _RUNS[name]


def guest_features(name: str, tmp_path) -> dict:
    """`features.probe()` inside the recipe's kernel, brought back through the results channel."""
    bzimage = kbuild.resolve_kernel(name, progress=False).bzimage
    code = (
        "import json, os; from uffdprobe.uffd import features; "
        "open(os.path.join(os.environ['UFFDPROBE_RESULTS'], 'features.json'), 'w')"
        ".write(json.dumps(features.probe().to_dict()))"
    )
    result = boot(bzimage, [PY, "-c", code], timeout=600, silence_timeout=300, run_dir=tmp_path / "run")
    assert (result.outcome, result.exit_status) == ("OK", 0), (result.reason, result.console_log)
    return json.loads((result.results_dir / "features.json").read_text())


def stock_verdict(r) -> Verdict:
    """What stock 6.1 answers for a cell that needs no uffd-wp: PASS, except where its recipe declares the
    leak the kernel's own cow selftest calls an expected failure (cow-leak on hugetlb) or the release hang
    (release-vs-gup), and SKIP for the
    interfaces 6.1 lacks (UFFDIO_MOVE, PAGEMAP_SCAN: probed in the scenario, named in the reason)."""
    if r.scenario in NEWER_THAN_6_1:
        assert "UFFD_FEATURE_MOVE" in r.reason or "PAGEMAP_SCAN" in r.reason, r.reason
        return Verdict.SKIP
    want = expect.declared(recipes.load("stock").expect, r.scenario, r.memory)
    return Verdict(want) if want in ("PASS", "LEAK", "HANG") else Verdict.PASS


def _rows(results):
    return [(r.scenario, r.memory, r.verdict.value, r.reason) for r in results]


def _whole_plan_answered(name: str, tmp_path_factory) -> tuple:
    """The recipe's run exited 0 with a verdict for every planned (scenario, memory): (results, final .config)."""
    status, results, stderr = run_recipe(name, tmp_path_factory)
    assert status == Exit.OK, f"exit {status}\n{stderr[-3000:]}"
    assert {(r.scenario, r.memory) for r in results} == PLANNED
    return results, _booted_the_recipe(name, results)


def _booted_the_recipe(name: str, results) -> dict:
    """The recipe's final .config; every result came from the kernel built with exactly that config.

    The guest hashes the .config it unpacks from /proc/config.gz; the builder hashed the same file."""
    built = kbuild.resolve_kernel(name, progress=False)
    assert {r.kernel.get("config_sha256") for r in results} == {built.identity["config_sha256"]}
    return kbuild_config.parse(built.config.read_text())


@pytest.mark.vm
@pytest.mark.reliability(
    "a kernel built without CONFIG_USERFAULTFD",
    "every uffd scenario SKIP with the probed reason, cow-leak (no uffd) runs, exit 0",
)
def test_without_userfaultfd_every_scenario_skips_with_the_reason(tmp_path_factory):
    results, config = _whole_plan_answered("no-userfaultfd", tmp_path_factory)
    assert config.get("CONFIG_USERFAULTFD") is None and config.get("CONFIG_HAVE_ARCH_USERFAULTFD_WP") is None
    for r in results:
        if r.scenario in NEEDS_NOTHING:  # fork + vmsplice only: it runs and gets stock 6.1's verdict
            assert r.verdict is stock_verdict(r) and r.duration_s > 0, _rows(results)
            continue
        assert r.verdict is Verdict.SKIP, _rows(results)
        assert "ENOSYS" in r.reason and "CONFIG_USERFAULTFD" in r.reason, r.reason
        assert r.duration_s == 0.0 and r.evidence == {}  # skipped at plan time: nothing was started
    assert not expect.check(recipes.load("no-userfaultfd").expect, results)


@pytest.mark.vm
def test_without_userfaultfd_the_probe_names_the_syscall_and_the_device(tmp_path_factory, tmp_path):
    run_recipe("no-userfaultfd", tmp_path_factory)  # builds the kernel if need be
    kf = guest_features("no-userfaultfd", tmp_path)
    assert kf["uffd_errno"] == errno.ENOSYS, kf["uffd_error"]
    assert "no /dev/userfaultfd" in kf["uffd_error"] and "CONFIG_USERFAULTFD" in kf["uffd_error"]
    assert kf["dev_userfaultfd"] == "absent" and kf["unprivileged_userfaultfd"] is None
    assert kf["features"] == [] and kf["anon_ioctls"] == {}


@pytest.mark.vm
@pytest.mark.reliability(
    "a kernel without uffd write-protect (UFFDIO_API and UFFDIO_REGISTER answer as one)",
    "each uffd-wp scenario SKIP with the probed reason, the rest run for real, exit 0",
)
def test_without_uffd_wp_only_the_wp_scenarios_skip(tmp_path_factory):
    results, config = _whole_plan_answered("no-uffd-wp", tmp_path_factory)
    assert config.get("CONFIG_HAVE_ARCH_USERFAULTFD_WP") == "y"  # the patch, not Kconfig, hides it
    for r in results:
        if r.scenario in NEEDS_WP:
            assert r.verdict is Verdict.SKIP, _rows(results)
            assert "kernel lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP" in r.reason, r.reason
            assert r.duration_s == 0.0 and r.evidence == {}
        else:  # the COW scenarios need no uffd, the MINOR one and release-vs-gup no uffd-wp: they run and get
            # stock 6.1's verdict (its recipe's declaration: the release hang, the hugetlb leak)
            assert r.verdict is stock_verdict(r), _rows(results)
            assert r.duration_s > 0
    assert {r.scenario for r in results} - NEEDS_WP == NEEDS_NOTHING | NEEDS_ONLY_UFFD
    assert NEEDS_NOTHING == {"cow-leak", "cow-leak-reverse"}
    assert not expect.check(recipes.load("no-uffd-wp").expect, results)


@pytest.mark.vm
def test_without_uffd_wp_the_api_hides_wp_and_register_refuses_it(tmp_path_factory, tmp_path):
    run_recipe("no-uffd-wp", tmp_path_factory)
    kf = guest_features("no-uffd-wp", tmp_path)
    assert kf["uffd_error"] is None
    assert "PAGEFAULT_FLAG_WP" not in kf["features"] and "WP_HUGETLBFS_SHMEM" not in kf["features"]
    assert "EVENT_FORK" in kf["features"] and "MISSING_SHMEM" in kf["features"]
    assert kf["anon_ioctls"]["WP"] == kf["anon_ioctls"]["MISSING|WP"] == ["refused: EINVAL"]
    assert "COPY" in kf["anon_ioctls"]["MISSING"] and "WRITEPROTECT" not in kf["anon_ioctls"]["MISSING"]


@pytest.fixture
def tmp_cache(tmp_path):
    """An empty kernel cache sharing the real cache's pristine sources (read-only use)."""
    _need_toolchain()
    real = kbuild_cache.default_root()
    if not (real / "sources").is_dir():
        pytest.skip("no unpacked linux-source-6.1 in the kernel cache yet (build any recipe first)")
    root = tmp_path / "kcache"
    root.mkdir()
    (root / "sources").symlink_to(real / "sources")
    shutil.copy(real / "source-hashes.json", root / "source-hashes.json")
    return root


@pytest.mark.reliability(
    "a fragment turning off an option that Kconfig selects back on",
    "the option named with the value it got, exit 4, nothing cached",
)
def test_not_set_option_forced_back_on_is_reported(tmp_cache, tmp_path, capsys):
    # X86_64 selects HAVE_ARCH_USERFAULTFD_WP whenever USERFAULTFD is on, as it is here
    fragment = tmp_path / "no-wp-symbol.config"
    fragment.write_text("# CONFIG_HAVE_ARCH_USERFAULTFD_WP is not set\n")
    status = cli.main(
        [
            "kernel",
            "build",
            "--quiet",
            "--cache-dir",
            str(tmp_cache),
            "--config-fragment",
            str(kbuild.DEFAULT_FRAGMENT),
            "--config-fragment",
            str(fragment),
        ]
    )
    err = capsys.readouterr().err
    assert status == Exit.CONFIG_DROPPED, err
    assert "CONFIG_HAVE_ARCH_USERFAULTFD_WP=not set (got y)" in err and "CONFIG_USERFAULTFD=" not in err
    entries = tmp_cache / "entries"
    assert not entries.exists() or list(entries.iterdir()) == []
