"""The kernel's own mm selftests (cow, gup_longterm, uffd-unit-tests), built once from Debian's
linux-source-6.12 against that tree's own uapi headers and cached like kernels.

Layout under the kernel cache root:
  kselftests/<key>/   bin/<program>..., build.log, identity.json, complete   (installed whole: temp + rename)
  locks/kselftest-<key>.lock                                                  (one builder at a time)
The key is a hash of the source tarball's sha256, the compiler, liburing's presence, the programs and
BUILD_STEPS; the pristine tree is the builder's (sources/<srcid>, shared with the stock-6.12 recipe) and
is never written: the selftest sources are copied out, `make headers` writes into a private O= dir.
"""
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from uffdprobe.osutil.files import sha256_file
from . import cache, source
from . import make as kbuild_make
from .errors import NO_SPACE_TEXT, BuildFailed, SetupError, no_space

TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
PROGRAMS = ("cow", "gup_longterm", "uffd-unit-tests")
#: What is copied out of the pristine tree: the mm selftests and everything their Makefile reaches.
COPIED = ("tools/testing/selftests/lib.mk", "tools/testing/selftests/kselftest.h",
          "tools/testing/selftests/kselftest_harness.h", "tools/testing/selftests/x86/check_cc.sh",
          "tools/testing/selftests/mm", "tools/include", "mm/gup_test.h")
#: Bumped when the way they are built changes (part of the cache key).
BUILD_STEPS = 1
HEADERS_TIMEOUT = 600
MAKE_TIMEOUT = 600
LIBURING_HEADER = Path("/usr/include/liburing.h")


@dataclass(frozen=True)
class Selftests:
    """Built selftests: the folder holding one executable per program, and what they were built from."""
    bin: Path
    identity: dict
    cached: bool

    def program(self, name: str) -> Path:
        return self.bin / name


def inputs(tarball: Path, root: Path) -> dict:
    """What the build depends on; its hash is the cache key."""
    liburing = LIBURING_HEADER.is_file()
    return {"source": {"name": tarball.name, "sha256": source.identify(source.parse_spec(str(tarball)), root)["sha256"]},
            "compiler": kbuild_make.compiler_id(), "liburing": _liburing_version() if liburing else None,
            "programs": list(PROGRAMS), "build_steps": BUILD_STEPS}


def _liburing_version() -> str:
    """liburing's version from its header (io_uring_version.h), or 'present'."""
    version = LIBURING_HEADER.parent / "liburing" / "io_uring_version.h"
    try:
        found = {line.split()[1]: line.split()[2] for line in version.read_text().splitlines()
                 if line.startswith("#define IO_URING_VERSION_")}
        return f"{found['IO_URING_VERSION_MAJOR']}.{found['IO_URING_VERSION_MINOR']}"
    except (OSError, KeyError, IndexError):
        return "present"


def ensure(root: Optional[Path] = None, tarball: Path = TARBALL, progress=None) -> Selftests:
    """The built selftests, from the cache or built now (whole or not at all). SetupError when the tarball
    or a tool is missing, BuildFailed (log kept) when make fails, NoSpace on a full disk."""
    root = Path(root) if root else cache.default_root()
    say = progress or (lambda text: print(f"kselftest: {text}", file=sys.stderr, flush=True))
    if not tarball.is_file():
        raise SetupError(f"no {tarball} to build the mm selftests from: apt-get install {tarball.name.split('.tar')[0]}")
    with cache.in_use(root):
        wanted = inputs(tarball, root)
        key = cache.sha256_json(wanted)[:16]
        final = root / "kselftests" / key
        found = _load(final)
        if found:
            return found
        with cache.Lock(root, f"kselftest-{key}", what=f"the mm selftests build {key}"):
            found = _load(final)  # another process built them while we waited
            if found:
                return found
            src = source.materialize(source.parse_spec(str(tarball)), root)
            say(f"building {', '.join(PROGRAMS)} from {tarball.name} ({src.version}) into {final}")
            started = time.monotonic()
            _build(src.tree, final, wanted, say)
            say(f"built in {time.monotonic() - started:.1f}s")
    found = _load(final)
    if found is None:
        raise SetupError(f"the mm selftests in {final} were installed but do not check out; remove that folder")
    return Selftests(found.bin, found.identity, cached=False)


def _load(final: Path) -> Optional[Selftests]:
    """The installed selftests when complete and every binary matches its recorded hash; else None."""
    try:
        marker = json.loads((final / cache.COMPLETE).read_text())
        identity = json.loads((final / "identity.json").read_text())
        for name, digest in marker["sha256"].items():
            if sha256_file(final / "bin" / name) != digest:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return Selftests(final / "bin", identity, cached=True)


def _build(tree: Path, final: Path, wanted: dict, say) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    log_lines: List[str] = []
    try:
        src, headers, out = tmp / "src", tmp / "headers", tmp / "out"
        for d in (src, out):
            d.mkdir()
        _copy_sources(tree, src)
        _run(kbuild_make.make_argv(tree, headers) + ["-j2", "headers"], HEADERS_TIMEOUT, "make headers",
             log_lines, final.parent, tmp)
        selftests = src / "tools" / "testing" / "selftests" / "mm"
        targets = [str(out / p) for p in PROGRAMS]
        _run(["make", "-j2", "-C", str(selftests), f"OUTPUT={out}", "CC=gcc",
              f"KHDR_INCLUDES=-isystem {headers / 'usr' / 'include'}"] + targets, MAKE_TIMEOUT,
             "make of the mm selftests", log_lines, final.parent, tmp)
        (tmp / "bin").mkdir()
        digests = {}
        for p in PROGRAMS:
            shutil.copy2(out / p, tmp / "bin" / p)
            digests[p] = sha256_file(tmp / "bin" / p)
        identity = {**wanted, "tree": str(tree), "built_at": time.time(),
                    "local_config": _local_config(selftests)}
        for d in (src, headers, out):
            shutil.rmtree(d, ignore_errors=True)
        (tmp / "build.log").write_text("".join(log_lines))
        (tmp / "identity.json").write_text(json.dumps(identity, indent=1, sort_keys=True) + "\n")
        (tmp / cache.COMPLETE).write_text(json.dumps({"sha256": digests}) + "\n")
        if final.exists():  # one _load() refused: stale or corrupt
            cache.remove_tree(final)
        tmp.rename(final)
    except BaseException:
        kept = final.parent / f"{final.name}.failed-build.log"
        try:
            kept.write_text("".join(log_lines))
        except OSError:
            pass
        cache.remove_tree(tmp)
        raise


def _local_config(selftests: Path) -> str:
    """What check_config.sh found (liburing or not), as the selftests were built with it."""
    try:
        return (selftests / "local_config.h").read_text().strip()
    except OSError:
        return ""


def _copy_sources(tree: Path, dest: Path) -> None:
    for rel in COPIED:
        src, to = tree / rel, dest / rel
        to.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, to, symlinks=True)
        else:
            shutil.copy2(src, to)


def _run(argv: list, timeout: float, what: str, log_lines: List[str], disk: Path, tmp: Path) -> None:
    def on_line(line: str) -> None:
        log_lines.append(line)
        if NO_SPACE_TEXT in line:
            raise no_space(disk, what)

    try:
        status, timed_out = kbuild_make.run_watched(argv, on_line, timeout, cwd=tmp)
    except FileNotFoundError:
        raise SetupError(f"{argv[0]} is not installed (needed for {what}): apt-get install build-essential") from None
    if timed_out or status != 0:
        log = disk / f"{tmp.name.split('-')[1]}.failed-build.log"
        tail = [x.strip() for x in log_lines if x.strip()][-1:] or ["no output"]
        why = f"took longer than {timeout:g}s" if timed_out else f"exit {status}: {tail[0][:200]}"
        raise BuildFailed(f"{what} {why}; build log: {log}", log=log)


def describe(st: Selftests) -> Tuple[str, ...]:
    """Lines for a report: where the selftests are and what they were built from."""
    ident = st.identity
    return (f"mm selftests {', '.join(ident.get('programs', []))} in {st.bin}",
            f"built from {ident.get('source', {}).get('name')} with {ident.get('compiler')}, liburing "
            f"{ident.get('liburing') or 'absent'}")
