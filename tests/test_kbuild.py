# SPDX-License-Identifier: GPL-2.0-only
"""Kernel builder on real sources: the four 2020 variants build, and every bad input has its own exit code.

The good builds go to the real kernel cache (a warm run is a cache hit); the failure cases
use a temporary cache that borrows the real cache's unpacked sources (immutable once complete).
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from uffdprobe.kbuild import build as kbuild, cache as kbuild_cache, recipes
from uffdprobe.cli import main as cli
from uffdprobe.exitcodes import Exit
from uffdprobe.kbuild.source import DEFAULT_TARBALL

pytestmark = [pytest.mark.build, pytest.mark.timeout(3600)]
VARIANTS = ["stock", "model-5.7", "model-5.8", "model-5.8-break-cow", "model-5.8-break-cow-fixup", "no-uffd-wp"]


def _need_toolchain():
    missing = [t for t in ("make", "gcc", "patch", "flex", "bison", "bc") if not shutil.which(t)]
    if missing:
        pytest.skip(f"kernel build tools missing: {' '.join(missing)} (apt-get install them)")
    if not DEFAULT_TARBALL.exists():
        pytest.skip(f"{DEFAULT_TARBALL} missing: apt-get install linux-source-6.1")


@pytest.fixture(scope="session")
def built():
    """The four variants, built once per session into the real cache (variants rebuild only mm/)."""
    _need_toolchain()
    kernels, times = {}, {}
    for name in VARIANTS:
        started = time.monotonic()
        kernels[name] = kbuild.build(name, progress=True)
        times[name] = time.monotonic() - started
    print("\nkbuild times: " + ", ".join(f"{n} {t:.0f} s" for n, t in times.items()))
    return kernels


@pytest.fixture
def tmp_cache(tmp_path, built):
    """An empty cache that shares the real cache's pristine sources (read-only use)."""
    root = tmp_path / "kcache"
    root.mkdir()
    (root / "sources").symlink_to(kbuild_cache.default_root() / "sources")
    shutil.copy(kbuild_cache.default_root() / "source-hashes.json", root / "source-hashes.json")
    return root


def _nothing_installed(root: Path):
    entries = root / "entries"
    assert not entries.exists() or list(entries.iterdir()) == []


def _cli(argv, capsys):
    status = cli.main(["kernel"] + argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_builds(built, name):
    kernel = built[name]
    recipe = recipes.load(name)
    assert kernel.bzimage.is_file() and kernel.bzimage.stat().st_size > 1_000_000
    assert kernel.identity["version"].startswith("6.1.")
    assert [p["name"] for p in kernel.identity["patches"]] == [p.name for p in recipe.patches]
    assert kernel.identity["expect"] == recipe.expect
    assert (kernel.bzimage.parent / ".config").resolve() == kernel.config.resolve()


def test_variants_share_one_config_and_differ_by_patches(built):
    configs = {k.identity["config_sha256"] for k in built.values()}
    keys = {k.key for k in built.values()}
    assert len(configs) == 1
    assert len(keys) == len(VARIANTS)


def test_final_config_has_what_the_harness_needs(built):
    options = dict(
        line.split("=", 1) for line in built["stock"].config.read_text().splitlines() if line.startswith("CONFIG_")
    )
    for name in (
        "USERFAULTFD",
        "HAVE_ARCH_USERFAULTFD_WP",
        "TRANSPARENT_HUGEPAGE",
        "9P_FS",
        "NET_9P_VIRTIO",
        "VIRTIO_PCI",
        "UNIX",
        "KALLSYMS",
        "STACKTRACE",
        "MAGIC_SYSRQ",
        "IKCONFIG_PROC",
        "DETECT_HUNG_TASK",
        "CROSS_MEMORY_ATTACH",
        "64BIT",
    ):
        assert options.get(f"CONFIG_{name}") == "y", name
    assert "CONFIG_MODULES" not in options


def test_second_build_is_a_cache_hit(built):
    again = kbuild.build("model-5.8", progress=False)
    assert again.cached
    assert again.bzimage == built["model-5.8"].bzimage


def test_cli_build_prints_the_bzimage(built, capsys):
    status, out, _ = _cli(["build", "stock", "--quiet"], capsys)
    assert status == Exit.OK
    assert out.strip() == str(built["stock"].bzimage)


@pytest.mark.reliability('a kernel source that does not exist', 'one-line error, exit 2, nothing in the cache')
def test_missing_source(tmp_path, capsys):
    status, _, err = _cli(["build", "--cache-dir", str(tmp_path), "--source", str(tmp_path / "nope")], capsys)
    assert status == Exit.USAGE
    assert "does not exist" in err and len(err.strip().splitlines()) == 1
    _nothing_installed(tmp_path)


@pytest.mark.reliability('a directory that is not a kernel tree', 'one-line error, exit 2, nothing in the cache')
def test_directory_that_is_not_a_kernel_tree(tmp_path, capsys):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n\ttrue\n")
    status, _, err = _cli(["build", "--cache-dir", str(tmp_path / "c"), "--source", str(tree)], capsys)
    assert status == Exit.USAGE
    assert "not a Linux kernel source tree" in err
    _nothing_installed(tmp_path / "c")


@pytest.mark.reliability('an unknown git ref', 'one-line error, exit 2')
def test_unknown_git_ref(tmp_path, capsys):
    if not shutil.which("git"):
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(
        os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"
    )
    for argv in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo)] + argv, check=True, env=env, timeout=60)
    status, _, err = _cli(["build", "--cache-dir", str(tmp_path / "c"), "--source", f"{repo}@v9.9-nope"], capsys)
    assert status == Exit.USAGE
    assert "v9.9-nope" in err and "not a commit" in err
    _nothing_installed(tmp_path / "c")


@pytest.mark.reliability('an unknown recipe name', 'one-line error, exit 2')
def test_unknown_recipe(tmp_path, capsys):
    status, _, err = _cli(["build", "--cache-dir", str(tmp_path), "model-4.2"], capsys)
    assert status == Exit.USAGE
    assert "unknown kernel recipe" in err and "model-5.8" in err


@pytest.mark.reliability(
    'a config fragment option the kernel defines but cannot set', 'the dropped option named, exit 4, nothing cached'
)
def test_unsettable_fragment_option_is_reported_dropped(tmp_cache, tmp_path, capsys):
    # KASAN_SW_TAGS is in 6.1's lib/Kconfig.kasan but depends on HAVE_ARCH_KASAN_SW_TAGS (arm64 only)
    fragment = tmp_path / "unsettable.config"
    fragment.write_text(kbuild.DEFAULT_FRAGMENT.read_text() + "CONFIG_KASAN_SW_TAGS=y\n")
    status, _, err = _cli(["build", "--cache-dir", str(tmp_cache), "--config-fragment", str(fragment)], capsys)
    assert status == Exit.CONFIG_DROPPED
    assert "CONFIG_KASAN_SW_TAGS=y (got not set)" in err and "not in this kernel's Kconfig" not in err
    _nothing_installed(tmp_cache)


@pytest.mark.reliability(
    "a config fragment option this kernel's Kconfig does not define", 'named in one line, left out, the build goes on'
)
def test_option_unknown_to_kconfig_is_left_out(built, tmp_cache, tmp_path, capsys):
    # Stock's entry in the temporary cache: the same final .config is the same kernel, so the build
    # that leaves the made-up option out ends as that cache hit instead of a 10-minute make.
    stock = built["stock"]
    shutil.copytree(stock.bzimage.parent, tmp_cache / "entries" / stock.bzimage.parent.name, symlinks=True)
    fragment = tmp_path / "cross-version.config"
    fragment.write_text(
        kbuild.DEFAULT_FRAGMENT.read_text() + "CONFIG_UFFDPROBE_MADE_UP=y\n# CONFIG_UFFDPROBE_ALSO_MADE_UP is not set\n"
    )
    status, out, err = _cli(["build", "--cache-dir", str(tmp_cache), "--config-fragment", str(fragment)], capsys)
    assert status == Exit.OK, err
    left_out = [line for line in err.splitlines() if "not in this kernel's Kconfig" in line]
    assert left_out == [
        "kbuild: not in this kernel's Kconfig: CONFIG_UFFDPROBE_ALSO_MADE_UP, CONFIG_UFFDPROBE_MADE_UP, left out"
    ]
    assert stock.key[:12] in out
    config = (tmp_cache / "entries" / stock.bzimage.parent.name / "config").read_text()
    assert "UFFDPROBE_MADE_UP" not in config


@pytest.mark.reliability(
    'a config the guest cannot boot with (no 9p, no virtiofs)',
    'every missing option named before make, exit 4, nothing cached',
)
def test_config_without_a_guest_root_is_refused_before_make(tmp_cache, tmp_path, capsys):
    fragment = tmp_path / "no-9p.config"
    fragment.write_text(kbuild.DEFAULT_FRAGMENT.read_text() + "# CONFIG_9P_FS is not set\n")
    status, _, err = _cli(["build", "--cache-dir", str(tmp_cache), "--config-fragment", str(fragment)], capsys)
    assert status == Exit.CONFIG_DROPPED
    assert "CONFIG_9P_FS=y or CONFIG_VIRTIO_FS=y" in err and "cannot boot as a uffdprobe guest" in err
    _nothing_installed(tmp_cache)
    logs = list((tmp_cache / "work").glob("*/logs/*.log"))
    assert logs and not any("  CC  " in log.read_text() for log in logs)  # refused before make compiled


def test_config_without_userfaultfd_only_warns(capsys):
    from uffdprobe.kbuild import config as kbuild_config, guestneeds

    kernel = kbuild.build("no-userfaultfd", progress=False)
    warnings = guestneeds.check(kbuild_config.parse(kernel.config.read_text()), kernel.config)
    assert any("CONFIG_USERFAULTFD is not set" in w and "will SKIP" in w for w in warnings)
    stock = kbuild.build("stock", progress=False)
    assert guestneeds.check(kbuild_config.parse(stock.config.read_text()), stock.config) == []


@pytest.mark.reliability('a patch that does not apply', 'patch, file and hunk named, exit 3, nothing cached')
def test_patch_that_does_not_apply_names_file_and_hunk(tmp_cache, tmp_path, capsys):
    # the break-cow patch alone: its second gup.c hunk needs model-5.8's should_force_cow_break() lines
    lone = recipes.load("model-5.8-break-cow").patches[-1]
    status, _, err = _cli(["build", "--cache-dir", str(tmp_cache), "--patch", str(lone)], capsys)
    assert status == Exit.PATCH_FAILED
    assert err.strip().splitlines() == [err.strip()]  # one line, before any work tree is made
    assert lone.name in err and "mm/gup.c" in err and "hunk #2" in err
    _nothing_installed(tmp_cache)
    assert not (tmp_cache / "work").exists()


@pytest.mark.reliability('a build that fails', 'exit 5, log path printed and kept, nothing cached')
def test_failing_build_keeps_its_log_and_installs_nothing(tmp_cache, tmp_path, capsys):
    broken = tmp_path / "0001-break-init.patch"
    broken.write_text(_syntax_error_patch(kbuild_cache.default_root() / "sources"))
    status, _, err = _cli(["build", "--cache-dir", str(tmp_cache), "--patch", str(broken)], capsys)
    assert status == Exit.BUILD_FAILED
    assert "build failed" in err and "build log: " in err
    log = Path(err.rsplit("build log: ", 1)[1].strip())
    assert log.is_file() and "init/version.c" in log.read_text()
    _nothing_installed(tmp_cache)


def _syntax_error_patch(sources: Path) -> str:
    """A one-line patch to init/version.c (compiled early) that does not compile."""
    tree = next(p / "tree" for p in sources.iterdir() if (p / "tree" / "init" / "version.c").exists())
    lines = (tree / "init" / "version.c").read_text().splitlines()
    anchor = next(i for i, line in enumerate(lines) if line.startswith("#include"))
    ctx = lines[anchor : anchor + 3]
    body = [f" {ctx[0]}", "+this is not C;"] + [f" {line}" for line in ctx[1:]]
    return (
        "--- a/init/version.c\n+++ b/init/version.c\n"
        f"@@ -{anchor + 1},{len(ctx)} +{anchor + 1},{len(ctx) + 1} @@\n" + "\n".join(body) + "\n"
    )


@pytest.mark.reliability('a corrupt cache entry (truncated bzImage)', 'detected and rebuilt')
def test_corrupt_entry_is_detected_and_removed(tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(b"\0" * 4096)
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_X=y\n")
    entry = kbuild_cache.install_entry(tmp_path / "c", "k" * 64, {"bzImage": bz, "config": cfg}, {"key": "k"})
    assert kbuild_cache.load_entry(tmp_path / "c", "k" * 64) is not None
    (entry.path / "bzImage").write_bytes(b"\1" * 4096)
    assert kbuild_cache.load_entry(tmp_path / "c", "k" * 64) is None
    assert not entry.path.exists()


@pytest.mark.reliability('two builders of the same kernel', 'the second waits, bounded, naming the holder')
def test_lock_wait_is_bounded_and_names_the_holder(tmp_path):
    from uffdprobe.kbuild.errors import SetupError

    with kbuild_cache.Lock(tmp_path, "x"):
        child = subprocess.run(
            [
                "python3",
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]);"
                "from uffdprobe.kbuild import cache as c;"
                "import pathlib;"
                "c.Lock(pathlib.Path(sys.argv[2]), 'x', wait=1).__enter__()",
                str(Path(kbuild.__file__).parents[2]),
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert child.returncode != 0
    assert f"pid {os.getpid()}" in child.stderr and SetupError.__name__ in child.stderr


def test_list_and_clean(tmp_path, capsys):
    bz = tmp_path / "bzImage"
    bz.write_bytes(b"\0" * 4096)
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_X=y\n")
    cache_dir = tmp_path / "c"
    kbuild_cache.install_entry(
        cache_dir,
        "a" * 64,
        {"bzImage": bz, "config": cfg},
        {"key": "a" * 64, "name": "stock", "version": "6.1.1", "patches": []},
    )
    status, out, _ = _cli(["list", "--cache-dir", str(cache_dir)], capsys)
    assert status == Exit.OK and "stock" in out and "6.1.1" in out
    status, _, err = _cli(["clean", "--cache-dir", str(cache_dir)], capsys)
    assert status == Exit.OK and "removed" in err
    status, out, err = _cli(["list", "--cache-dir", str(cache_dir)], capsys)
    assert status == Exit.OK and out == "" and "no kernels cached" in err
