# SPDX-License-Identifier: GPL-2.0-only
"""A tuxmake output folder as a kernel: bzImage, config, modules.tar.xz, metadata.json, and optionally
kselftest.tar.xz (tuxmake's targets kernel, config, modules, kselftest).

The identity comes from metadata.json (git URL, commit and describe, kernel release and version,
compiler, kconfig); config is read for the guest's needs like any .config; modules.tar.xz is unpacked
once into the cache by its content hash (as a .deb's modules are); kselftest.tar.xz is unpacked the
same way and its mm selftests serve --kselftest.
"""

import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import VmInputError

METADATA = "metadata.json"
IMAGE = "bzImage"
UNPACK_SUBDIR = "tuxmake"


@dataclass(frozen=True)
class TuxmakeBuild:
    """The files of one tuxmake output folder (None where the build has no such target)."""

    folder: Path
    image: Path
    metadata: dict = field(default_factory=dict)
    config: Optional[Path] = None
    modules: Optional[Path] = None
    kselftest: Optional[Path] = None


def is_tuxmake(path: Path) -> bool:
    """A folder with tuxmake's metadata.json beside a bzImage."""
    return Path(path).is_dir() and (Path(path) / METADATA).is_file() and (Path(path) / IMAGE).is_file()


def read(folder: Path) -> TuxmakeBuild:
    """The folder's files and metadata; VmInputError (one line) when it is not a usable tuxmake folder."""
    folder = Path(folder)
    if not is_tuxmake(folder):
        raise VmInputError(
            f"{folder} is not a tuxmake output folder: it needs {METADATA} and {IMAGE} "
            "(tuxmake --target-arch x86_64 --targets kernel,config,modules)"
        )
    try:
        metadata = json.loads((folder / METADATA).read_text())
    except (OSError, ValueError) as exc:
        raise VmInputError(f"{folder / METADATA} is not readable JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise VmInputError(f"{folder / METADATA} is not a JSON object")
    status = (metadata.get("results") or {}).get("status")
    if status not in (None, "PASS"):
        raise VmInputError(f"{folder}: tuxmake says the build's status is {status}: see its build.log")
    found = {
        name: folder / name for name in ("config", "modules.tar.xz", "kselftest.tar.xz") if (folder / name).is_file()
    }
    return TuxmakeBuild(
        folder,
        folder / IMAGE,
        metadata,
        found.get("config"),
        found.get("modules.tar.xz"),
        found.get("kselftest.tar.xz"),
    )


def identity(build: TuxmakeBuild) -> dict:
    """What a report says about the kernel: source (git URL, commit, describe, branch), release and
    version, compiler, kconfig and the config's hash, from metadata.json and the config file."""
    meta = build.metadata
    git, source, compiler = meta.get("git") or {}, meta.get("source") or {}, meta.get("compiler") or {}
    settings = meta.get("build") or {}
    out = {
        "tuxmake": str(build.folder),
        "release": source.get("kernelrelease"),
        "version": source.get("kernelversion"),
        "compiler": compiler.get("version_full"),
        "kconfig": settings.get("kconfig"),
        "toolchain": settings.get("toolchain"),
    }
    if git.get("git_commit") or git.get("git_url"):
        out["source"] = {
            "kind": "git",
            "repo": git.get("git_url"),
            "commit": git.get("git_commit"),
            "describe": git.get("git_describe"),
            "branch": git.get("git_branch"),
        }
    if build.config:
        out["config_sha256"] = hashlib.sha256(build.config.read_bytes()).hexdigest()
        out["config_file"] = str(build.config)
    return {key: value for key, value in out.items() if value}


def unpacked(tarball: Path, cache_dir: Path) -> Path:
    """The tarball unpacked once under cache_dir/tuxmake/NAME-SHA16 (whole: a temporary folder renamed);
    members that would land outside it, links and devices are refused (tarfile's 'data' filter)."""
    digest = hashlib.sha256(Path(tarball).read_bytes()).hexdigest()[:16]
    dest = Path(cache_dir) / UNPACK_SUBDIR / f"{Path(tarball).name.split('.')[0]}-{digest}"
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if not hasattr(tarfile, "data_filter"):  # Python before 3.9.17/3.10.12/3.11.4: no safe extraction
            raise VmInputError(f"unpacking {tarball} safely needs Python 3.11.4 or later (tarfile's data filter)")
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / ".complete").write_text(str(tarball) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / ".complete").exists():
                raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        if not (dest / ".complete").exists():
            raise VmInputError(f"cannot unpack {tarball}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def module_dir(build: TuxmakeBuild, release: Optional[str], cache_dir: Path) -> Optional[Path]:
    """lib/modules/RELEASE from modules.tar.xz (None without one); VmInputError when it holds no
    modules for the image's release."""
    if build.modules is None:
        return None
    top = unpacked(build.modules, cache_dir)
    found = sorted(p for p in top.glob("**/lib/modules/*") if p.is_dir()) or sorted(
        p for p in top.glob("lib/modules/*") if p.is_dir()
    )
    for cand in found:
        if release is None or cand.name == release:
            return cand
    raise VmInputError(
        f"{build.modules} has no lib/modules/{release} (it has "
        f"{', '.join(p.name for p in found) or 'none'}): it is not this bzImage's"
    )
