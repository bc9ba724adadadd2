# SPDX-License-Identifier: GPL-2.0-only
"""A tuxmake output folder as --kernel DIR: built by the tests from real kernels' outputs (the stock
recipe's cache entry; Debian's cloud kernel, whose virtiofs/9p drivers are modules, so it boots only
with its modules.tar.xz), booted, its identity taken from metadata.json."""

import json
import lzma
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from uffdprobe.kbuild import build as kbuild, kselftest as kselftest_build
from uffdprobe.vm import distro, tuxmake
from uffdprobe.vm.errors import VmInputError, VmSetupError
from uffdprobe.vm.paths import cache_root

pytestmark = pytest.mark.timeout(1800)
GIT = {
    "git_url": "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git",
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "git_describe": "v6.1.192",
    "git_branch": "linux-6.1.y",
}


def _metadata(release: str, version: str, compiler: str, modules: list) -> dict:
    """A metadata.json as tuxmake writes it (docs/metadata.md): two levels, groups then items."""
    return {
        "build": {
            "target_arch": "x86_64",
            "toolchain": "gcc-12",
            "kconfig": "tinyconfig",
            "targets": ["config", "kernel", "modules"],
        },
        "compiler": {"name": "gcc", "version": "12", "version_full": compiler},
        "git": GIT,
        "source": {"kernelrelease": release, "kernelversion": version},
        "artifacts": {"modules": modules},
        "results": {"status": "PASS", "targets": {"kernel": {"status": "PASS", "duration": 1.0}}},
    }


def _modules_tar(moddir: Path, into: Path) -> list:
    """modules.tar.xz as tuxmake packs it: lib/modules/RELEASE/..."""
    with tarfile.open(into, "w:xz", preset=0) as tar:
        tar.add(moddir, arcname=f"lib/modules/{moddir.name}")
    return sorted(str(p.relative_to(moddir)) for p in moddir.rglob("*.ko*"))


@pytest.fixture(scope="module")
def stock_folder(tmp_path_factory) -> Path:
    """The stock recipe's bzImage and .config, with metadata.json (no modules: stock builds none)."""
    built = kbuild.resolve_kernel("stock")
    folder = tmp_path_factory.mktemp("tux-stock")
    shutil.copy(built.bzimage, folder / "bzImage")
    shutil.copy(built.config, folder / "config")
    version = built.identity["version"]
    meta = _metadata(version, version, built.identity["compiler"], [])
    (folder / "metadata.json").write_text(json.dumps(meta))
    built_selftests = kselftest_build.ensure()  # kselftest.tar.xz as tuxmake packs it: kselftest_install/mm/...
    with tarfile.open(folder / "kselftest.tar.xz", "w:xz", preset=0) as tar:
        tar.add(built_selftests.program("gup_longterm"), arcname="kselftest_install/mm/gup_longterm")
    return folder


@pytest.fixture(scope="module")
def cloud_folder(tmp_path_factory) -> Path:
    """Debian's cloud kernel as tuxmake would leave it: bzImage, config, modules.tar.xz, metadata.json."""
    try:
        deb = distro.debian_cloud_kernel(cache_root() / "debs")
    except (VmSetupError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot get a Debian cloud kernel package: {exc}")
    unpacked = distro.unpack_kernel_deb(deb, cache_root() / distro.UNPACK_SUBDIR)
    folder = tmp_path_factory.mktemp("tux-cloud")
    shutil.copy(unpacked.image, folder / "bzImage")
    shutil.copy(unpacked.config, folder / "config")
    release = unpacked.moddir.name
    modules = _modules_tar(unpacked.moddir, folder / "modules.tar.xz")
    (folder / "metadata.json").write_text(json.dumps(_metadata(release, release.split("-")[0], "gcc 12", modules)))
    return folder


def _run(folder: Path, out: Path, *more: str) -> subprocess.CompletedProcess:
    out.mkdir(exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "--kernel",
            f"tux={folder}",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--results-dir",
            str(out),
            "--json",
            str(out / "results.json"),
            *more,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.vm
@pytest.mark.build
def test_stock_as_a_tuxmake_folder_boots_with_its_metadata(stock_folder, tmp_path):
    kcidb_io = pytest.importorskip("kcidb_io")
    proc = _run(
        stock_folder,
        tmp_path / "out",
        "--kcidb",
        str(tmp_path / "kcidb.json"),
        "--origin",
        "uffdprobe_test",
        "--kselftest",
        "gup_longterm",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    meta = json.loads((stock_folder / "metadata.json").read_text())
    assert results[0]["verdict"] == "PASS" and results[0]["scenario"] == "cow-leak"
    assert results[0]["kernel"]["release"] == meta["source"]["kernelrelease"]
    rows = [r for r in results if r["memory"] == "-"]  # its own kselftest.tar.xz's gup_longterm, in the guest
    assert rows[0]["scenario"] == "gup_longterm" and rows[0]["verdict"] == "PASS" and len(rows) > 1
    assert all("/tuxmake/kselftest-" in r["evidence"]["selftests_from"] for r in rows)
    data = json.loads((tmp_path / "kcidb.json").read_text())
    kcidb_io.schema.V5_3.validate_exactly(data)
    (checkout,), (build,) = data["checkouts"], data["builds"]
    assert (checkout["git_commit_hash"], checkout["git_repository_url"], checkout["git_commit_name"]) == (
        GIT["git_commit"],
        GIT["git_url"],
        GIT["git_describe"],
    )
    assert build["compiler"] == meta["compiler"]["version_full"] and build["config_name"] == "tinyconfig"
    assert (tmp_path / "out" / "config").read_bytes() == (stock_folder / "config").read_bytes()
    assert (tmp_path / "out" / "console.log").is_file()


@pytest.mark.vm
def test_cloud_kernel_as_a_tuxmake_folder_boots_with_its_modules(cloud_folder, tmp_path):
    """Its virtiofs/9p drivers are modules: it boots only because modules.tar.xz was unpacked and used."""
    proc = _run(cloud_folder, tmp_path / "out", "-v")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert [r["verdict"] for r in results] == ["PASS"]
    release = json.loads((cloud_folder / "metadata.json").read_text())["source"]["kernelrelease"]
    assert results[0]["kernel"]["release"] == release
    with lzma.open(cloud_folder / "modules.tar.xz") as raw, tarfile.open(fileobj=raw) as tar:
        shipped = {Path(m.name).name for m in tar.getmembers() if m.name.endswith((".ko", ".ko.xz"))}
    assert any(name.startswith(("virtiofs", "9pnet_virtio")) for name in shipped)  # the shares' drivers

    bare = tmp_path / "no-modules"
    shutil.copytree(cloud_folder, bare)
    (bare / "modules.tar.xz").unlink()
    proc = _run(bare, tmp_path / "out2")
    assert proc.returncode == 2 and "as modules but no lib/modules" in proc.stderr, proc.stderr[-2000:]


def test_folders_that_are_not_tuxmake_builds_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", "--kernel", str(empty)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "tuxmake output folder" in proc.stderr and "Traceback" not in proc.stderr
    (empty / "bzImage").write_bytes(b"not a kernel")
    (empty / "metadata.json").write_text(json.dumps({"results": {"status": "FAIL"}}))
    with pytest.raises(VmInputError, match="status is FAIL"):
        tuxmake.read(empty)
