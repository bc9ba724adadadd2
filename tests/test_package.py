# SPDX-License-Identifier: GPL-2.0-only
"""uffdprobe as a user gets it: the wheel and the sdist built by `python -m build`, each installed into a fresh
venv outside the checkout, run from another folder; and the recipe search path.

The venvs live under /var/tmp, not /tmp: the guest covers /tmp (vm.boot.keep_visible binds back only what
it needs). Nothing is downloaded: the build runs without isolation on this venv's setuptools and cffi, and
each fresh venv sees copies of the installed dependencies (cffi, pycparser, psutil; setuptools to build the
sdist) through a .pth file, so pip installs with --no-index.
"""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

import uffdprobe
from uffdprobe.kbuild import recipes
from uffdprobe.osutil import datafiles

CHECKOUT = Path(__file__).resolve().parents[1]
RUNTIME_DEPS = ["cffi", "pycparser", "psutil"] + (["tomli"] if sys.version_info < (3, 11) else [])


def test_every_module_parses_as_python_3_9():
    """requires-python is >=3.9 and the wheel is cp39-abi3: no syntax newer than 3.9 anywhere."""
    package = Path(uffdprobe.__file__).parent
    for path in sorted(package.rglob("*.py")) + [CHECKOUT / "setup.py", CHECKOUT / "native" / "build_native.py"]:
        if path.exists():
            ast.parse(path.read_text(), str(path), feature_version=(3, 9))


def test_user_recipes_come_first_and_may_use_the_shipped_patches(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "stock.toml").write_text(
        'summary = "my stock"\nsource = "/usr/src/linux-source-6.1.tar.xz"\npatches = []\n'
    )
    shipped = recipes.load("model-5.7")
    rel = [str(p.relative_to(datafiles.vm_images())) for p in shipped.patches]
    (mine / "my-5.7.toml").write_text(
        f'source = "/usr/src/linux-source-6.1.tar.xz"\nfragments = ["fragments/x86_64.config"]\npatches = {rel!r}\n'
    )
    monkeypatch.setenv(recipes.PATH_ENV, f"{tmp_path / 'absent'}{os.pathsep}{mine}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert recipes.search_path()[:3] == [tmp_path / "absent", mine, tmp_path / "config" / "uffdprobe" / "recipes"]
    assert recipes.load("stock").summary == "my stock", "the user's folder wins over the shipped recipes"
    assert "my-5.7" in recipes.names() and "model-5.8" in recipes.names()
    assert recipes.load("my-5.7").patches == shipped.patches
    listing = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "kernel", "list", "--recipes"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert lines["my-5.7"].endswith(f"({mine / 'my-5.7.toml'})")
    assert lines["stock"].endswith(f"({mine / 'stock.toml'})")
    assert ".toml)" not in lines["model-5.8"], "shipped recipes are listed without a path"


# --- built and installed ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work():
    path = Path(tempfile.mkdtemp(prefix="uffdprobe-package-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dists(work):
    """{'sdist': path, 'wheel': path}: python -m build makes the sdist, then the wheel from the sdist."""
    if not (CHECKOUT / "pyproject.toml").is_file():
        pytest.skip(f"{CHECKOUT} is not a source tree")
    out = work / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "-o", str(out), str(CHECKOUT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = out.glob("uffdprobe-*.tar.gz")
    (wheel,) = out.glob("uffdprobe-*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.mark.package  # builds the sdist and the wheel (CONTRIBUTING.md: the package lane)
def test_wheel_is_abi3_and_manylinux_as_auditwheel_reads_it(dists):
    """An index refuses linux_x86_64; the manylinux tag must be the one the binaries really satisfy."""
    name = dists["wheel"].name
    tag = re.search(r"-cp39-abi3-(manylinux_\d+_\d+_x86_64)\.whl$", name)
    assert tag, name
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(dists["wheel"])], capture_output=True, text=True, timeout=300
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    said = " ".join(shown.stdout.split())
    assert f'is consistent with the following platform tag: "{tag.group(1)}"' in said, said


@pytest.mark.package  # builds the sdist and the wheel (CONTRIBUTING.md: the package lane)
def test_wheel_carries_the_license(dists):
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = whl.namelist()
        licence = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licence, [n for n in names if "dist-info" in n]
        assert "GNU GENERAL PUBLIC LICENSE" in whl.read(licence[0]).decode()
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: GPL-2.0-only" in metadata and "License-File: LICENSE" in metadata


@pytest.mark.package  # builds the sdist and the wheel (CONTRIBUTING.md: the package lane)
def test_sdist_holds_what_building_and_testing_need(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for need in (
        "native/build_native.py",
        "native/uffdprobe_native.h",
        "native/uffdprobe_native.c",
        "native/uffd_uapi_fallback.h",
        "native/bench_missing.c",
        "native/umapsort_repro.c",
        "vm-images/recipes/stock.toml",
        "vm-images/fragments/x86_64.config",
        "tests/conftest.py",
        "tox.ini",
        "setup.py",
        "MANIFEST.in",
        "uffdprobe/vm/guest_init.sh",
        "LICENSE",
        "CHANGELOG.md",
        "CONTRIBUTING.md",
        "docs/user-guide.md",
        "docs/design.md",
        "docs/results.md",
    ):
        assert need in names, f"{need} missing from {dists['sdist'].name}"
    assert not [n for n in names if n.endswith((".so", ".pyc"))]


def _share(venv: Path, names: list) -> None:
    """Copies of this interpreter's installed distributions `names`, on the venv's path through a .pth file."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = venv / "shared-deps"  # inside the venv: the guest sees it too (sys.prefix is kept visible)
    deps.mkdir()
    for name in names:
        dist = importlib.metadata.distribution(name)
        for top in sorted({Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}):
            src = Path(dist.locate_file(top))
            if src.is_dir():
                shutil.copytree(src, deps / top, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.is_file() and not top.endswith(".pth"):
                shutil.copy2(src, deps / top)
    (site / "uffdprobe-test-deps.pth").write_text(f"{deps}\n")


@pytest.fixture(scope="module", params=["wheel", "sdist"])
def installed(request, work, dists):
    """(uffdprobe command, environment, a folder outside the checkout) for a fresh venv holding the dist."""
    kind = request.param
    venv = work / f"venv-{kind}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    _share(venv, RUNTIME_DEPS + (["setuptools"] if kind == "sdist" else []))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-index",
            "--no-build-isolation",
            str(dists[kind]),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    elsewhere = work / f"elsewhere-{kind}"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return str(venv / "bin" / "uffdprobe"), env, elsewhere


def _run(installed, *argv, timeout=300) -> subprocess.CompletedProcess:
    exe, env, cwd = installed
    return subprocess.run([exe, *argv], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.mark.package
@pytest.mark.build
def test_installed_package_runs_from_anywhere_with_its_own_data(installed):
    exe, env, cwd = installed
    where = subprocess.run(
        [
            str(Path(exe).with_name("python")),
            "-c",
            "import uffdprobe, uffdprobe.osutil.datafiles as d, uffdprobe.vm.boot as b; "
            "print(uffdprobe.__file__, d.checkout(), b.GUEST_INIT, sep='\\n')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )
    module, checkout, guest_init = where.stdout.split("\n")[:3]
    assert module.startswith(str(Path(exe).parents[1])) and checkout == "None", where.stdout + where.stderr
    assert os.access(guest_init, os.X_OK), f"{guest_init} lost its executable bit"

    version = _run(installed, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"uffdprobe {uffdprobe.__version__}"
    listing = _run(installed, "list")
    assert listing.returncode == 0 and "wp-real-write" in listing.stdout, listing.stderr
    feats = _run(installed, "features")
    assert feats.returncode == 0 and "features (" in feats.stdout and "unnamed" not in feats.stdout, feats.stdout
    recipes_out = _run(installed, "kernel", "list", "--recipes")
    shipped = sorted(p.stem for p in (CHECKOUT / "vm-images" / "recipes").glob("*.toml"))
    assert recipes_out.returncode == 0 and [line.split()[0] for line in recipes_out.stdout.splitlines()] == shipped
    doctor = _run(installed, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    no_compiler = dict(env, PATH=str(Path(exe).parent))  # the C handler was built at install time
    bench = subprocess.run(
        [exe, "bench", "--pages", "500", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=no_compiler,
        cwd=cwd,
    )
    assert bench.returncode == 0 and "C handler" in bench.stdout, bench.stdout + bench.stderr
    listing = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=120, env=no_compiler, cwd=cwd)
    repro = next(line.split("path: ", 1)[1] for line in listing.stdout.splitlines() if line.startswith("  path: "))
    assert repro.startswith(str(Path(exe).parents[1])) and repro.endswith("/data/native/umapsort-repro"), repro
    assert os.access(repro, os.X_OK), f"{repro}: the reproducer was not built at install time"


@pytest.mark.package
@pytest.mark.build
@pytest.mark.vm
def test_installed_package_runs_a_scenario_in_the_cached_stock_kernel(installed):
    proc = _run(installed, "run", "--kernel", "stock", "wp-real-write", timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [re.match(r"\[\d+/\d+\] wp-real-write +(\S+) +(\S+)", line) for line in proc.stdout.splitlines()]
    verdicts = [row.group(2) for row in rows if row]
    assert verdicts and set(verdicts) == {"PASS"}, proc.stdout


def test_a_newer_uapi_header_wins_over_the_fallback(tmp_path):
    """native/uffd_uapi_fallback.h only fills what the build machine's linux/userfaultfd.h lacks: compiled
    against a header that has the 6.8 additions (the system one plus them), nothing is defined twice."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    system = Path("/usr/include/linux/userfaultfd.h")
    if "UFFDIO_MOVE" in system.read_text():
        pytest.skip(f"{system} already has the 6.8 uAPI: the fallback is not compiled here at all")
    newer = tmp_path / "linux"
    newer.mkdir()
    (newer / "userfaultfd.h").write_text(
        "#include_next <linux/userfaultfd.h>\n"
        "#define UFFD_FEATURE_WP_UNPOPULATED (1<<13)\n#define UFFD_FEATURE_POISON (1<<14)\n"
        "#define UFFD_FEATURE_WP_ASYNC (1<<15)\n#define UFFD_FEATURE_MOVE (1<<16)\n"
        "#define UFFDIO_CONTINUE_MODE_WP ((__u64)1<<1)\n"
        "struct uffdio_poison { struct uffdio_range range; __u64 mode; __s64 updated; };\n"
        "#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1<<0)\n#define _UFFDIO_POISON (0x08)\n"
        "#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)\n"
        "struct uffdio_move { __u64 dst; __u64 src; __u64 len; __u64 mode; __s64 move; };\n"
        "#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1<<0)\n#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1<<1)\n"
        "#define _UFFDIO_MOVE (0x05)\n#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)\n"
    )
    source = CHECKOUT / "native" / "uffdprobe_native.c"
    for include in ([], ["-I", str(tmp_path)]):  # the build machine's header, then the newer one
        proc = subprocess.run(
            [cc, "-fsyntax-only", "-Wall", "-Werror", "-I", str(source.parent), *include, str(source)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr


def test_version_from_a_checkout_carries_git_describe():
    if datafiles.checkout() is None or not (datafiles.checkout() / ".git").exists():
        pytest.skip("not running from a git checkout")
    git = ["git", "-C", str(datafiles.checkout())]
    head = subprocess.run(
        git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    tags = subprocess.run(
        git + ["tag", "--points-at", "HEAD"], capture_output=True, text=True, timeout=30
    ).stdout.split()
    info = uffdprobe.version_info()
    described = info["git"].removesuffix("-dirty")
    assert info["version"] == uffdprobe.__version__
    assert described.endswith(head) or described in tags, (info, head, tags)
    assert uffdprobe.version() == f"{uffdprobe.__version__} (git {info['git']})"
