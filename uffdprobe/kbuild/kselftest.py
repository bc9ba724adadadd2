# SPDX-License-Identifier: GPL-2.0-only
"""The kernel's own mm selftests, built from a kernel source (by default Debian's linux-source-6.12;
a recipe's own tree, or any tree or tarball given with --kselftest-from) against that tree's own uapi
headers, and cached like kernels. Any C program of the tree's mm selftests can be asked for by name
(tools/testing/selftests/mm, or vm before v6.3).

Layout under the kernel cache root:
  kselftests/<key>/   bin/<program>..., build.log, identity.json, complete   (installed whole: temp + rename)
  locks/kselftest-<key>.lock                                                  (one builder at a time)
The key is a hash of the source's identity (a tarball's sha256, a tree's fingerprint, a git commit), the
compiler, liburing's presence, the programs and BUILD_STEPS; the pristine tree is the builder's
(sources/<srcid>, shared with the recipes) and is never written: the selftest sources are copied out,
`make headers` writes into a private O= dir.
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
from uffdprobe.supervise.kselftest import built_from
from . import cache, source
from . import make as kbuild_make
from .errors import NO_SPACE_TEXT, BuildFailed, SetupError, no_space

TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
PROGRAMS = ("cow", "gup_longterm", "uffd-unit-tests")
#: Where a tree keeps its mm selftests: mm since v6.3, vm before.
SELFTEST_DIRS = ("tools/testing/selftests/mm", "tools/testing/selftests/vm")
#: What is copied out of the pristine tree besides the mm selftests: everything their Makefile reaches.
COPIED = (
    "tools/testing/selftests/lib.mk",
    "tools/testing/selftests/kselftest.h",
    "tools/testing/selftests/kselftest_harness.h",
    "tools/testing/selftests/x86/check_cc.sh",
    "tools/include",
    "mm/gup_test.h",
)
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


def inputs(tarball: Path, root: Path, programs: Tuple[str, ...] = PROGRAMS) -> dict:
    """What the build depends on; its hash is the cache key. `tarball` is any source spec (a tarball,
    a tree, GIT@REF); a tarball is named by its file name and sha256."""
    liburing = LIBURING_HEADER.is_file()
    spec = source.parse_spec(str(tarball))
    ident = source.identify(spec, root)
    named = {"name": Path(spec.location).name, "sha256": ident["sha256"]} if spec.kind == "tarball" else ident
    return {
        "source": named,
        "compiler": kbuild_make.compiler_id(),
        "liburing": _liburing_version() if liburing else None,
        "programs": list(programs),
        "build_steps": BUILD_STEPS,
    }


def selftest_dir(tree: Path) -> Optional[Path]:
    """The tree's mm selftests folder (mm, or vm before v6.3), None when it has neither."""
    return next((tree / d for d in SELFTEST_DIRS if (tree / d / "Makefile").is_file()), None)


def available(tree: Path) -> List[str]:
    """The C programs of the tree's mm selftests, by name."""
    folder = selftest_dir(tree)
    return sorted(p.stem for p in folder.glob("*.c")) if folder else []


def _liburing_version() -> str:
    """liburing's version from its header (io_uring_version.h), or 'present'."""
    version = LIBURING_HEADER.parent / "liburing" / "io_uring_version.h"
    try:
        found = {
            line.split()[1]: line.split()[2]
            for line in version.read_text().splitlines()
            if line.startswith("#define IO_URING_VERSION_")
        }
        return f"{found['IO_URING_VERSION_MAJOR']}.{found['IO_URING_VERSION_MINOR']}"
    except (OSError, KeyError, IndexError):
        return "present"


def ensure(
    root: Optional[Path] = None, tarball: Path = TARBALL, progress=None, programs: Tuple[str, ...] = PROGRAMS
) -> Selftests:
    """The built selftests, from the cache or built now (whole or not at all). `tarball` is the source: a
    tarball, a tree or GIT@REF. SetupError when it or a tool is missing or it has no such selftest,
    BuildFailed (log kept) when make fails, NoSpace on a full disk."""
    root = Path(root) if root else cache.default_root()
    say = progress or (lambda text: print(f"kselftest: {text}", file=sys.stderr, flush=True))
    spec = source.parse_spec(str(tarball))
    if spec.kind == "tarball" and not Path(spec.location).is_file():
        raise SetupError(
            f"no {tarball} to build the mm selftests from: apt-get install {Path(tarball).name.split('.tar')[0]}"
        )
    with cache.in_use(root):
        wanted = inputs(tarball, root, tuple(programs))
        key = cache.sha256_json(wanted)[:16]
        final = root / "kselftests" / key
        found = _load(final)
        if found:
            return found
        with cache.Lock(root, f"kselftest-{key}", what=f"the mm selftests build {key}"):
            found = _load(final)  # another process built them while we waited
            if found:
                return found
            src = source.materialize(spec, root)
            missing = [p for p in programs if p not in available(src.tree)]
            if missing:
                raise SetupError(
                    f"{tarball} ({src.version}) has no mm selftest {', '.join(missing)}; its own: "
                    f"{', '.join(available(src.tree)) or 'none'}"
                )
            say(f"building {', '.join(programs)} from {Path(spec.location).name} ({src.version}) into {final}")
            started = time.monotonic()
            _build(src.tree, final, dict(wanted, version=src.version), say)
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
        programs = list(wanted["programs"])
        folder = selftest_dir(tree)
        if folder is None:
            raise SetupError(f"{tree} has no mm selftests ({' or '.join(SELFTEST_DIRS)})")
        _copy_sources(tree, src, folder.relative_to(tree))
        _run(
            kbuild_make.make_argv(tree, headers) + ["-j2", "headers"],
            HEADERS_TIMEOUT,
            "make headers",
            log_lines,
            final.parent,
            tmp,
        )
        selftests = src / folder.relative_to(tree)
        targets = [str(out / p) for p in programs]
        _run(
            [
                "make",
                "-j2",
                "-C",
                str(selftests),
                f"OUTPUT={out}",
                "CC=gcc",
                f"KHDR_INCLUDES=-isystem {headers / 'usr' / 'include'}",
            ]
            + targets,
            MAKE_TIMEOUT,
            "make of the mm selftests",
            log_lines,
            final.parent,
            tmp,
        )
        (tmp / "bin").mkdir()
        digests = {}
        for p in programs:
            shutil.copy2(out / p, tmp / "bin" / p)
            digests[p] = sha256_file(tmp / "bin" / p)
        identity = {**wanted, "tree": str(tree), "built_at": time.time(), "local_config": _local_config(selftests)}
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


def _copy_sources(tree: Path, dest: Path, selftests: Path) -> None:
    for rel in (*COPIED, str(selftests)):
        src, to = tree / rel, dest / rel
        if not src.exists():  # an older tree lacks a header the newer Makefile reaches for
            continue
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
    return (
        f"mm selftests {', '.join(ident.get('programs', []))} in {st.bin}",
        f"built from {built_from(st.bin)} with {ident.get('compiler')}, liburing {ident.get('liburing') or 'absent'}",
    )
