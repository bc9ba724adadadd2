# SPDX-License-Identifier: GPL-2.0-only
"""Build kernels from recipes or ad-hoc specs, cached by (source identity, final .config, patches).

Variants of one source and config share a workspace: a tree of hard links to the pristine
source plus one `make O=` directory. A build rewrites only the files its patch series
changes (and restores the ones the previous variant changed), so switching variants
recompiles a handful of mm/ objects and relinks, instead of building from scratch.
"""

import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from . import cache
from . import config as kbuild_config, make as kbuild_make, source as kbuild_source, patches as patches_mod, recipes
from .errors import NO_SPACE_TEXT, SetupError, no_space
from uffdprobe.osutil.files import sha256_file, usable_dir, write_atomic

BUILDER_VERSION = 1
DEFAULT_FRAGMENT = recipes.VM_IMAGES / "fragments" / "x86_64.config"
BZIMAGE = Path("arch/x86/boot/bzImage")


@dataclass(frozen=True)
class BuildSpec:
    """An ad-hoc kernel: source spec text ("" = Debian's 6.1 tarball), base target, fragments, patches."""

    source: str = ""
    base: str = "tinyconfig"
    fragments: tuple = (DEFAULT_FRAGMENT,)
    patches: tuple = ()
    name: str = "custom"


@dataclass
class BuiltKernel:
    """A kernel in the cache: bzImage, its .config, identity (source, version, config hash, patch hashes)."""

    bzimage: Path
    config: Path
    identity: dict
    key: str
    recipe: Optional[recipes.Recipe] = None
    cached: bool = False
    seconds: float = 0.0
    log: Optional[Path] = field(default=None)


@dataclass
class _Job:
    """Everything one build() call has worked out before it needs the source tree."""

    spec: BuildSpec
    recipe: Optional[recipes.Recipe]
    root: Path
    series: list
    fragment_hashes: list
    identity: dict
    cc: str
    show: kbuild_make.Progress
    source_spec: kbuild_source.SourceSpec = None

    @property
    def inputs(self) -> str:
        """Hash of everything that decides the result, known without unpacking or configuring."""
        return cache.sha256_json(
            {
                "builder": BUILDER_VERSION,
                "source": self.identity,
                "base": self.spec.base,
                "fragments": self.fragment_hashes,
                "cc": self.cc,
                "patches": [p.sha256 for p in self.series],
            }
        )


def build(
    what: Union[str, recipes.Recipe, BuildSpec],
    progress: bool = True,
    cache_dir=None,
    jobs: Optional[int] = None,
    timeout: float = kbuild_make.BUILD_TIMEOUT,
) -> BuiltKernel:
    """Build (or take from the cache) a recipe name, Recipe or BuildSpec; raises KbuildError subclasses.

    Every input (recipe, patches, fragments, source) is checked before anything is written; a
    full disk anywhere under the cache is NoSpace (exit 6) naming the cache.
    """
    started = time.monotonic()
    job = _prepare(what, cache_dir, progress)
    try:
        with cache.in_use(job.root):  # `kernel clean` leaves sources and workspaces alone meanwhile
            return _build_job(job, jobs, timeout, progress, started)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise no_space(job.root, f"writing {exc.filename or 'the cache'}") from None


def _prepare(what, cache_dir, progress: bool) -> "_Job":
    """Load and check every input, then identify the source (which may write its hash memo)."""
    recipe = recipes.load(what) if isinstance(what, str) else what if isinstance(what, recipes.Recipe) else None
    spec = _spec_of(recipe) if recipe else what
    series = patches_mod.load_series(spec.patches)
    fragment_hashes = [_fragment_hash(f) for f in spec.fragments]
    source_spec = kbuild_source.parse_spec(spec.source)
    root = Path(cache_dir) if cache_dir else cache.default_root()
    try:
        usable_dir(
            root,
            "the kernel cache",
            "pass a writable --cache-dir" if cache_dir else "point XDG_CACHE_HOME at a writable folder",
        )
        cache.mark(root)  # a new folder, or one laid out as ours (made before markers existed)
        identity = kbuild_source.identify(source_spec, root)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise no_space(root, "recording the source's hash") from None
    return _Job(
        spec,
        recipe,
        root,
        series,
        fragment_hashes,
        identity,
        kbuild_make.compiler_id(),
        kbuild_make.Progress(spec.name, progress),
        source_spec,
    )


def _build_job(job: "_Job", jobs: Optional[int], timeout: float, progress: bool, started: float) -> BuiltKernel:
    hit = _cached(job.root, cache.read_alias(job.root, job.inputs))
    if hit:
        return _result(hit, job, True, started)
    source = kbuild_source.materialize(job.source_spec, job.root, progress)
    work = _work_dir(job, source.srcid)
    stage_dir = Path(tempfile.mkdtemp(dir=job.root, prefix=".stage-"))
    try:
        staged = patches_mod.stage(job.series, source.tree, stage_dir)  # PatchDoesNotApply before any change
        with cache.Lock(job.root, f"work-{work.name}", what=f"build workspace {work}"):
            hit = _build_in(job, source, work, staged, jobs or (os.cpu_count() or 1) + 1, timeout)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
    return _result(hit, job, False, started)


def _work_dir(job: "_Job", srcid: str) -> Path:
    """work/<wsid>: one workspace per (source, base, fragments, compiler), shared by patch variants."""
    wsid = cache.sha256_json({"src": srcid, "base": job.spec.base, "fragments": job.fragment_hashes, "cc": job.cc})[:16]
    return job.root / "work" / wsid


def workspace(what: Union[str, recipes.Recipe, BuildSpec], cache_dir=None) -> Path:
    """The workspace directory a build of `what` uses (it may not exist yet)."""
    job = _prepare(what, cache_dir, progress=False)
    return _work_dir(job, cache.sha256_json(job.identity)[:16])


def _build_in(job: _Job, source, work: Path, staged: dict, jobs: int, timeout: float) -> cache.Entry:
    """Under the workspace lock: switch the work tree to this variant, configure, make, install."""
    tree = _workspace_tree(source, work, job.show)
    log_path = _new_log(work, job.spec.name)
    job.show.note(f"build log: {log_path}")
    _switch_variant(tree, source.tree, work, staged)
    make = kbuild_make.make_argv(tree, work / "build")
    with open(log_path, "a") as log:
        config = kbuild_config.configure(make, tree, work / "build", job.spec.base, list(job.spec.fragments), log)
    key = cache.sha256_json(
        {"source": job.identity, "config": sha256_file(config), "patches": [p.sha256 for p in job.series]}
    )
    hit = _cached(job.root, key)
    if not hit:
        job.show.note(f"building {source.version} ({len(job.series)} patch(es)) in {work / 'build'}")
        base = cache.sha256_json({"base": job.spec.base, "fragments": job.fragment_hashes})[:16]
        if not (work / "build" / "vmlinux").exists():  # nothing built here yet: every file compiles
            job.show.expect(cache.cold_build(job.root, base))
        kbuild_make.run_make(
            make + [f"-j{jobs}", "bzImage"], log_path, job.show, timeout, env=kbuild_make.make_env(work), disk=job.root
        )
        job.show.finish("built")
        made = job.show.made()
        if made:
            cache.record_cold_build(job.root, base, made)
        files = {"bzImage": work / "build" / BZIMAGE, "config": config, "build.log": log_path}
        hit = cache.install_entry(job.root, key, files, _identity(job, source, config, key))
    cache.write_alias(job.root, job.inputs, key)
    return hit


def resolve_kernel(name: str, progress: bool = True, cache_dir=None) -> BuiltKernel:
    """The cached-or-built kernel of a recipe name (e.g. "model-5.8"); `.bzimage` is what QEMU boots."""
    return build(recipes.load(name), progress=progress, cache_dir=cache_dir)


def cached(what: Union[str, recipes.Recipe, BuildSpec], cache_dir=None) -> Optional[BuiltKernel]:
    """The cached kernel of a recipe name, Recipe or BuildSpec; None when it would have to be built. Never builds."""
    started = time.monotonic()
    job = _prepare(what, cache_dir, progress=False)
    hit = _cached(job.root, cache.read_alias(job.root, job.inputs))
    return _result(hit, job, True, started) if hit else None


def _spec_of(recipe: recipes.Recipe) -> BuildSpec:
    return BuildSpec(
        source=recipe.source,
        base=recipe.base,
        fragments=recipe.fragments or (DEFAULT_FRAGMENT,),
        patches=recipe.patches,
        name=recipe.name,
    )


def _fragment_hash(path) -> str:
    kbuild_config.read_fragment(path)  # BadInput early, before anything is unpacked
    return sha256_file(Path(path))


def _cached(root: Path, key: Optional[str]) -> Optional[cache.Entry]:
    """The entry for `key`, held (shared) for the rest of this process before it is looked at."""
    if not key:
        return None
    cache.hold_entry(root, key)
    return cache.load_entry(root, key)


def _result(entry: cache.Entry, job: _Job, cached: bool, started: float) -> BuiltKernel:
    log = entry.path / "build.log"
    # the series as read now (same content: the key holds every patch's hash), so entries installed
    # before patches named their files say them too
    identity = dict(entry.identity, patches=_patch_identity(job.series))
    if job.recipe is not None:  # [expect] is not part of the build: a cached kernel carries today's declarations
        identity["expect"] = job.recipe.expect
    return BuiltKernel(
        bzimage=entry.bzimage,
        config=entry.path / "config",
        identity=identity,
        key=entry.identity.get("key", entry.path.name),
        recipe=job.recipe,
        cached=cached,
        seconds=time.monotonic() - started,
        log=log if log.exists() else None,
    )


def _identity(job: _Job, source, config: Path, key: str) -> dict:
    spec, recipe = job.spec, job.recipe
    return {
        "key": key,
        "name": spec.name,
        "recipe": str(recipe.path) if recipe else None,
        "models": recipe.models if recipe else {},
        "expect": recipe.expect if recipe else {},
        "source": source.identity,
        "source_spec": str(source.spec),
        "version": source.version,
        "base": spec.base,
        "fragments": [{"path": str(f), "sha256": h} for f, h in zip(spec.fragments, job.fragment_hashes)],
        "config_sha256": sha256_file(config),
        "patches": _patch_identity(job.series),
        "compiler": job.cc,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _patch_identity(series: list) -> list:
    return [{"name": p.name, "subject": p.subject, "files": list(p.files), "sha256": p.sha256} for p in series]


def _workspace_tree(source, work: Path, show) -> Path:
    """work/tree: hard links to the pristine tree, made once per workspace (cp -al, atomic rename)."""
    tree = work / "tree"
    if (work / "tree.complete").exists():
        return tree
    show.note(f"linking a work tree from {source.tree}")
    cache.remove_tree(tree)
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / ".tree-tmp"
    cache.remove_tree(tmp)
    done = subprocess.run(["cp", "-al", str(source.tree), str(tmp)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        cache.remove_tree(tmp)
        if NO_SPACE_TEXT in done.stderr:
            raise no_space(work, "linking a work tree")
        raise SetupError(f"cannot link a work tree: {done.stderr.strip()[:200]}")
    os.rename(tmp, tree)
    (work / "state.json").write_text(json.dumps({"modified": []}))
    (work / "tree.complete").write_text("ok\n")
    return tree


def _switch_variant(tree: Path, pristine: Path, work: Path, staged: dict) -> None:
    """Make `tree` = pristine + staged files, rewriting only files whose content must change (new mtime)."""
    state_path = work / "state.json"
    try:
        previous = set(json.loads(state_path.read_text())["modified"])
    except (OSError, ValueError, KeyError):
        raise SetupError(f"{state_path} is unreadable: remove {work} and build again") from None
    everything = sorted(previous | set(staged))
    write_atomic(state_path, json.dumps({"modified": everything}).encode())  # a crash stays recoverable
    for rel in everything:
        want = staged[rel] if rel in staged else (pristine / rel if (pristine / rel).is_file() else None)
        _put(tree / rel, want)
    write_atomic(state_path, json.dumps({"modified": sorted(staged)}).encode())


def _put(dest: Path, want: Optional[Path]) -> None:
    if want is None:
        if dest.exists():
            dest.unlink()
        return
    data = want.read_bytes()
    if dest.is_file() and dest.read_bytes() == data:
        return
    write_atomic(dest, data)
    os.chmod(dest, want.stat().st_mode & 0o777)


def _new_log(work: Path, name: str) -> Path:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return logs / f"{stamp}-{os.getpid()}-{name}.log"


def list_kernels(cache_dir=None) -> list:
    """Installed kernels, newest first (cache.Entry with .path, .bzimage, .identity)."""
    return cache.list_entries(Path(cache_dir) if cache_dir else cache.default_root())
