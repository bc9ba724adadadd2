# SPDX-License-Identifier: GPL-2.0-only
"""One kernel argument for run, matrix, boot and the pytest plugin (uffdprobe/run/kernel_arg.py).

Host-only: every kernel here is resolved and refused (or accepted) before anything is built
or booted, so these tests check what was refused, that nothing ran, and the exit status.
The real kernels they point at are files: the cache's built bzImages, the shipped recipes.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from uffdprobe.exitcodes import Exit, UsageError
from uffdprobe.kbuild import recipes
from uffdprobe.run import kernel_arg

PY = sys.executable
pytest_plugins = ["pytester"]
RECIPE = recipes.RECIPE_DIR / "stock.toml"


def _uffdprobe(*args, timeout=120, **kw):
    return subprocess.run([PY, "-m", "uffdprobe", *args], capture_output=True, text=True, timeout=timeout, **kw)


def _qemu_children_of(pid: int) -> list:
    """QEMU processes whose parent chain reaches pid (none may exist once the child has exited)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")[0]
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if b"qemu-system" in cmd and int(stat[1]) == pid:
                found.append(int(proc.name))
    return found


@pytest.fixture
def fake_image(tmp_path):
    """A file named bzImage that is not a kernel: no boot header."""
    path = tmp_path / "bzImage"
    path.write_bytes(b"not a kernel\n" * 100)
    return path


def test_every_kind_resolves_to_its_label(tmp_path):
    copy = tmp_path / "mine.toml"
    copy.write_text(
        RECIPE.read_text()
        .replace('name = "stock"', 'name = "my-stock"')
        .replace("../fragments/", str(recipes.VM_IMAGES / "fragments") + "/")
    )
    cases = {
        "host": ("host", "host"),
        "stock": ("stock", "recipe"),
        str(RECIPE): ("stock", "recipe-file"),
        str(copy): ("my-stock", "recipe-file"),
        f"old={copy}": ("old", "recipe-file"),
        "now=host": ("now", "host"),
        "before=model-5.8": ("before", "recipe"),
    }
    for arg, (label, kind) in cases.items():
        spec = kernel_arg.resolve(arg)
        assert (spec.label, spec.kind, spec.arg) == (label, kind, arg)
        assert spec.labelled == ("=" in arg)


def test_a_path_holding_an_equals_sign_is_not_split(tmp_path):
    odd = tmp_path / "cfg=a"
    odd.mkdir()
    recipe = odd / "x=y.toml"
    recipe.write_text(RECIPE.read_text().replace("../fragments/", str(recipes.VM_IMAGES / "fragments") + "/"))
    assert kernel_arg.resolve(str(recipe)).kind == "recipe-file"
    assert kernel_arg.resolve(f"lbl={recipe}").label == "lbl"


@pytest.mark.parametrize(
    "arg,says",
    [
        ("", "is empty"),
        ("  ", "is empty"),
        ("=stock", "is not a label"),
        ("a/b=stock", "not 'host', not a file, not a recipe"),
        ("old=", "nothing after 'old='"),
        ("no-such", "not 'host', not a file, not a recipe"),
        ("/nowhere/v5.8.1.toml", "not 'host', not a file, not a recipe"),
    ],
)
def test_bad_arguments_say_what_to_give(arg, says):
    with pytest.raises(UsageError, match=says):
        kernel_arg.resolve(arg)


def test_not_a_kernel_image_or_deb_is_refused(fake_image, tmp_path):
    with pytest.raises(UsageError, match="not an x86 kernel image"):
        kernel_arg.resolve(str(fake_image))
    deb = tmp_path / "linux-image.deb"
    deb.write_text("hello\n")
    with pytest.raises(UsageError, match="not a Debian package"):
        kernel_arg.resolve(str(deb))
    with pytest.raises(UsageError, match="is a directory"):
        kernel_arg.resolve(str(tmp_path))


def test_recipe_file_with_a_missing_patch_is_refused_at_resolution(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        RECIPE.read_text()
        .replace("patches = []", 'patches = ["nowhere.patch"]')
        .replace("../fragments/", str(recipes.VM_IMAGES / "fragments") + "/")
    )
    with pytest.raises(UsageError, match="patch nowhere.patch not found"):
        kernel_arg.resolve(str(bad))


def test_two_kernels_with_one_file_name_get_two_labels(tmp_path):
    built = sorted((Path(os.path.expanduser("~/.cache/uffdprobe/kernels/entries"))).glob("*/bzImage"))
    if len(built) < 2:
        pytest.skip("needs two built kernels in the cache (uffdprobe kernel build stock model-5.8)")
    a, b = tmp_path / "a" / "bzImage", tmp_path / "b" / "bzImage"
    for src, dest in ((built[0], a), (built[1], b)):
        dest.parent.mkdir()
        shutil.copyfile(src, dest)
    defaults = kernel_arg.resolve_all([str(a), str(b)])  # the file name plus a short content hash
    assert [s.label for s in defaults] == [f"bzImage-{s.sha256[:8]}" for s in defaults]
    assert defaults[0].label != defaults[1].label
    with pytest.raises(UsageError, match="both labelled 'same'.*LABEL=KERNEL"):
        kernel_arg.resolve_all([f"same={a}", f"same={b}"])
    specs = kernel_arg.resolve_all([f"first={a}", f"second={b}"])
    assert [(s.label, s.path) for s in specs] == [("first", a), ("second", b)]
    with pytest.raises(UsageError, match="given twice"):
        kernel_arg.resolve_all([str(a), f"again={a}"])


@pytest.mark.reliability(
    "a bad kernel among several (matrix --kernel)",
    "one line naming it, exit 2, before any build or QEMU, no output file",
)
def test_matrix_refuses_a_bad_kernel_among_several_before_anything_runs(fake_image, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            "host",
            "--kernel",
            "stock",
            "--kernel",
            str(RECIPE),
            "--kernel",
            f"broken={fake_image}",
            "--results-dir",
            str(out),
            "--json",
            str(tmp_path / "m.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_qemu = []
    while proc.poll() is None:
        seen_qemu += _qemu_children_of(proc.pid)
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == Exit.USAGE
    assert stderr.strip().splitlines() == [stderr.strip()], stderr  # one line
    assert f"broken={fake_image}" in stderr and "not an x86 kernel image" in stderr
    assert not seen_qemu and not out.exists() and not (tmp_path / "m.json").exists()
    assert "building" not in stderr and stdout == ""


@pytest.mark.reliability("run --kernel '' (an empty kernel argument)", "refused in one line, exit 2, nothing runs")
def test_run_kernel_host_runs_here_and_empty_is_refused(tmp_path):
    done = _uffdprobe("run", "--kernel", "host", "--json", str(tmp_path / "r.json"), "cow-leak")
    assert done.returncode in (Exit.OK, Exit.NO_UFFD_PERMISSION), done.stderr
    assert "cow-leak" in done.stdout and "[vm]" not in done.stderr
    empty = _uffdprobe("run", "--kernel", "", "cow-leak")
    assert empty.returncode == Exit.USAGE and "--kernel '' is empty" in empty.stderr
    assert "cow-leak" not in empty.stdout
    appended = _uffdprobe("run", "--kernel", "host", "--append", "quiet", "cow-leak")
    assert appended.returncode == Exit.USAGE and "--append" in appended.stderr


def test_boot_refuses_host_and_bad_kernels_before_booting(fake_image):
    for arg, says in (("host", "not booted in QEMU"), ("", "is empty"), (str(fake_image), "not an x86 kernel")):
        done = _uffdprobe("boot", arg, "--", "true")
        assert done.returncode == Exit.USAGE and says in done.stderr, done.stderr
        assert "booting" not in done.stderr


def test_run_refuses_a_recipe_whose_source_is_missing(tmp_path):
    bad = tmp_path / "v5.8.1.toml"
    bad.write_text(
        RECIPE.read_text()
        .replace("/usr/src/linux-source-6.1.tar.xz", str(tmp_path / "linux-5.8.1"))
        .replace("../fragments/", str(recipes.VM_IMAGES / "fragments") + "/")
    )
    done = _uffdprobe("run", "--kernel", str(bad), "cow-leak")
    assert done.returncode == Exit.USAGE and "linux-5.8.1 does not exist" in done.stderr


def test_recipe_source_path_is_relative_to_the_recipe_folder(tmp_path):
    (tmp_path / "trees" / "linux-6.1").mkdir(parents=True)
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "tree.toml"
    text = RECIPE.read_text().replace("../fragments/", str(recipes.VM_IMAGES / "fragments") + "/")
    recipe.write_text(text.replace("/usr/src/linux-source-6.1.tar.xz", "../trees/linux-6.1"))
    assert recipes.load(recipe).source == str(tmp_path / "trees" / "linux-6.1")
    recipe.write_text(text.replace("/usr/src/linux-source-6.1.tar.xz", "../trees/linux-6.1@v6.1"))
    assert recipes.load(recipe).source == str(tmp_path / "trees" / "linux-6.1") + "@v6.1"
    recipe.write_text(text)
    assert recipes.load(recipe).source == "/usr/src/linux-source-6.1.tar.xz"


def test_pytest_plugin_refuses_a_bad_kernel_among_several(pytester, fake_image):
    pytester.makepyfile(
        test_user="""
import pytest

@pytest.mark.uffd_scenario("cow-leak")
def test_cow_leak(uffd_verdict):
    uffd_verdict.check()
"""
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--uffd-kernel",
        "host",
        "--uffd-kernel",
        "stock",
        "--uffd-kernel",
        f"broken={fake_image}",
        timeout=120,
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--uffd-kernel broken={fake_image}: *not an x86 kernel image*"])
    assert "booting" not in result.stdout.str() + result.stderr.str()
