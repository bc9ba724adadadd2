# SPDX-License-Identifier: GPL-2.0-only
"""What pyproject.toml cannot say: cffi's build hook, the abi3 and manylinux wheel tags, and the data copied into
the package.

The repository's top-level vm-images/ (recipes, fragments, patch series) and native/bench_missing.c stay
the one source of truth. build_py copies them into the built package as uffdprobe/data/, so a wheel, and a
wheel built from the sdist, carry them; nothing is duplicated or symlinked in the tree. An editable
install reads them from the checkout instead (uffdprobe/osutil/datafiles.py decides which).
"""
import platform
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
#: source (relative to the checkout) -> destination inside the package
SHIPPED = {"vm-images": "data/vm-images", "native/bench_missing.c": "data/native/bench_missing.c",
           "native/umapsort_repro.c": "data/native/umapsort_repro.c"}
#: C programs linked at install time into uffdprobe/data/native/: executable name -> source in native/
PROGRAMS = {"bench_missing": "bench_missing.c", "umapsort-repro": "umapsort_repro.c"}


class BuildPyWithData(build_py):
    """build_py, plus the checkout's data folders copied into uffdprobe/data/ (modes kept: scripts stay
    executable)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        package = Path(self.build_lib) / "uffdprobe"
        for src, dest in SHIPPED.items():
            source, target = HERE / src, package / dest
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.orig", "*.rej"))
            else:
                shutil.copy2(source, target)


class BuildExtWithBench(build_ext):
    """build_ext (the cffi module), plus the C programs (PROGRAMS: `bench`'s C handler, the umapsort reproducer
    for --exec) linked into uffdprobe/data/native/, so an installed uffdprobe needs no compiler to run them (a
    checkout compiles them at run time)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or self.inplace:
            return
        out = Path(self.build_lib) / "uffdprobe" / "data" / "native"
        out.mkdir(parents=True, exist_ok=True)
        for name, source in PROGRAMS.items():
            objects = self.compiler.compile([str(HERE / "native" / source)], output_dir=self.build_temp,
                                            extra_postargs=["-O2", "-pthread"])
            self.compiler.link_executable(objects, name, output_dir=str(out), extra_postargs=["-pthread"])


def glibc_needed(root: Path) -> tuple:
    """The newest GLIBC_x.y symbol version any ELF file under `root` needs (objdump -T), e.g. (2, 34)."""
    newest = (2, 17)  # manylinux2014's floor: nothing older is worth naming
    for path in root.rglob("*"):
        if not path.is_file() or path.open("rb").read(4) != b"\x7fELF":
            continue
        dump = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True, check=True).stdout
        for major, minor in re.findall(r"\bGLIBC_(\d+)\.(\d+)", dump):
            newest = max(newest, (int(major), int(minor)))
    return newest


class BdistWheelManylinux(bdist_wheel):
    """bdist_wheel with a truthful manylinux tag (PEP 600) instead of linux_ARCH, which an index refuses: the
    glibc the built module and programs actually need, read from their symbol versions after the install step.
    They link nothing but libc; tests/test_package.py checks the tag with auditwheel."""

    def get_tag(self):
        impl, abi, plat = super().get_tag()
        if plat.startswith("linux_"):
            major, minor = glibc_needed(Path(self.bdist_dir))
            plat = f"manylinux_{major}_{minor}_{platform.machine()}"
        return impl, abi, plat


setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    cmdclass={"build_py": BuildPyWithData, "build_ext": BuildExtWithBench, "bdist_wheel": BdistWheelManylinux},
    # cffi builds the extension against the stable ABI (Py_LIMITED_API): one wheel for CPython 3.9 and later.
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
