# SPDX-License-Identifier: GPL-2.0-only
"""Incremental kernel builds for bisection: one `make O=` directory and one .config for every step.

The first step configures (base target + fragments, as the builder does) and saves the .config
and the fragments' options (so editing a fragment file mid-bisection changes nothing); each later
step restores it, lets `make olddefconfig` follow Kconfig changes, and runs make, so
only files the checkout changed (and what depends on them) recompile. ccache sees the same
compiler flags throughout, so revisiting a state costs cache hits, not compiles.
"""

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from uffdprobe.kbuild import config as kbuild_config, make as kbuild_make
from uffdprobe.kbuild.errors import BuildFailed
from uffdprobe.osutil import files

BZIMAGE = Path("arch/x86/boot/bzImage")
FROZEN = "bisect.fragments.json"


@dataclass
class BuildOutcome:
    """A finished step build: the bzImage, its sha256, seconds, files compiled, and the log."""

    bzimage: Path
    sha256: str
    seconds: float
    compiled: int
    log: Path


def build_dir(work: Path) -> Path:
    """The one build directory of a bisection work dir."""
    return Path(work) / "build"


def build_step(
    tree: Path,
    work: Path,
    base: str,
    fragments: list,
    label: str,
    jobs: int = 0,
    progress: bool = True,
    timeout: float = kbuild_make.BUILD_TIMEOUT,
) -> BuildOutcome:
    """Configure (first time) or restore the saved .config, then make bzImage; BuildFailed or ConfigDropped."""
    started = time.monotonic()
    tree, work = Path(tree).resolve(), Path(work).resolve()
    build = build_dir(work)
    saved = work / "bisect.config"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}.log"
    show = kbuild_make.Progress(label, progress)
    show.note(f"build log: {log_path}")
    make = kbuild_make.make_argv(tree, build)
    with open(log_path, "a") as log:
        frozen = _load_frozen(work)
        if saved.exists() and frozen is not None:
            build.mkdir(parents=True, exist_ok=True)
            _restore(saved, build / ".config")
            _olddefconfig(make, tree, log)
            final = kbuild_config.parse((build / ".config").read_text())
            known, unknown = kbuild_config.split_known(frozen["wanted"], kbuild_config.defined_symbols(tree))
            kbuild_config.say_left_out(unknown, log)
            kbuild_config.check_dropped(known, final, frozen["fragments"])
        else:
            freeze(work, base, fragments)
            config = kbuild_config.configure(make, tree, build, base, list(fragments), log)
            shutil.copyfile(config, saved)
    jobs = jobs or (os.cpu_count() or 1) + 1
    kbuild_make.run_make(make + [f"-j{jobs}", "bzImage"], log_path, show, timeout, env=make_env(tree, work))
    bzimage = build / BZIMAGE
    if not bzimage.is_file():
        raise BuildFailed(f"make succeeded but left no {BZIMAGE}; build log: {log_path}", log=log_path)
    show.finish("built")
    return BuildOutcome(bzimage, files.sha256_file(bzimage), time.monotonic() - started, show.compiled, log_path)


def compiled_in(log_path) -> int:
    """How many files a build log shows being compiled (also for a build that failed)."""
    try:
        return sum(1 for line in Path(log_path).read_text(errors="replace").splitlines() if line.startswith("  CC "))
    except OSError:
        return 0


def freeze(work: Path, base: str, fragments: list) -> None:
    """Record the base and the fragments' options: later steps check against these, not the files."""
    wanted = {}
    for fragment in fragments:
        wanted.update(kbuild_config.read_fragment(fragment))
    state = {
        "base": base,
        "fragments": [str(f) for f in fragments],
        "hashes": fragment_hashes(fragments),
        "wanted": wanted,
    }
    files.write_atomic(Path(work) / FROZEN, json.dumps(state, indent=1).encode())


def fragment_hashes(fragments: list) -> list:
    """sha256 of each fragment file, in order."""
    return [files.sha256_file(Path(f)) for f in fragments]


def start_fresh_if_changed(work: Path, base: str, fragments: list) -> bool:
    """At the start of a bisection: drop the saved .config when base or fragments changed since."""
    frozen = _load_frozen(work)
    if frozen is None or (frozen["base"], frozen["hashes"]) == (base, fragment_hashes(fragments)):
        return False
    (Path(work) / "bisect.config").unlink(missing_ok=True)
    (Path(work) / FROZEN).unlink()
    return True


def _load_frozen(work: Path):
    try:
        return json.loads((Path(work) / FROZEN).read_text())
    except (OSError, ValueError):
        return None


def make_env(tree: Path, work: Path) -> dict:
    """The builder's make environment, ccache-rooted where tree and build meet; no "+" in the release."""
    base = Path(os.path.commonpath([str(tree), str(work)]))
    env = kbuild_make.make_env(base if base != Path("/") else work)
    env["LOCALVERSION"] = ""  # a git tree would otherwise get a "+" suffix and a different utsrelease.h
    return env


def _olddefconfig(make: list, tree: Path, log) -> None:
    """Follow this commit's Kconfig from the saved .config (a no-op when Kconfig did not change)."""
    log.write(f"$ {' '.join(make)} olddefconfig\n")
    log.flush()
    try:
        done = subprocess.run(
            make + ["olddefconfig"],
            cwd=tree,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=kbuild_config.CONFIG_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise BuildFailed(
            f"make olddefconfig took longer than {kbuild_config.CONFIG_TIMEOUT} s", log=log.name
        ) from None
    if done.returncode != 0:
        raise BuildFailed(f"make olddefconfig failed (exit {done.returncode}); build log: {log.name}", log=log.name)


def _restore(saved: Path, config: Path) -> None:
    """Put the saved .config back only when it differs (an unchanged mtime avoids a resync)."""
    want = saved.read_bytes()
    if config.is_file() and config.read_bytes() == want:
        return
    files.write_atomic(config, want)
