# SPDX-License-Identifier: GPL-2.0-only
"""--kselftest on run and matrix: which selftest programs a kernel runs, where their binaries are (built
once into the kernel cache, kbuild.kselftest), and the rows each owes before it has run."""

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from uffdprobe.exitcodes import UsageError
from uffdprobe.scenarios.memkinds import NO_MEMORY
from uffdprobe.supervise import kselftest


def chosen(items: List[str]) -> List[str]:
    """The --kselftest values (repeatable, comma-separated) checked: unknown names are a UsageError."""
    for item in items:
        if not all(part.strip() for part in item.split(",")):
            raise UsageError(
                f"--kselftest {item!r}: an empty name; choose from {', '.join(kselftest.PROGRAMS)} (comma-separated)"
            )
    wanted = kselftest.requests(items)
    names = [item.partition("=")[0] for item in wanted]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # its rows would be one program's twice over
        raise UsageError(f"--kselftest names {', '.join(twice)} more than once; give each selftest once")
    for item in wanted:
        try:
            kselftest.parse_request(item)
        except KeyError:
            raise UsageError(
                f"--kselftest {item}: not a selftest's name; give {', '.join(kselftest.PROGRAMS)} "
                "or another mm selftest program's name (comma-separated)"
            ) from None
        except ValueError as exc:
            raise UsageError(f"--kselftest {item}: {exc}") from None
    return wanted


def owed(items: List[str]) -> List[Tuple[str, str, Optional[int]]]:
    """The run row every requested program owes (its cases are only known once it has run)."""
    return [(kselftest.parse_request(item)[0].name, NO_MEMORY, None) for item in items]


def binaries(kselftests: Sequence[str], given: Optional[str], spec=None, progress=None) -> Path:
    """Where the selftests the run asks for are (KbuildError with its own exit status when they cannot be
    built, UsageError for a --kselftest-from that holds none of them):
    --kselftest-from DIR of built programs (how a host tells its guest), a tuxmake folder (its
    kselftest.tar.xz), a source tree or tarball (built); else a tuxmake kernel's own kselftest.tar.xz;
    else a recipe's own source tree when it has every program asked; else Debian's linux-source-6.12."""
    names = [kselftest.parse_request(item)[0].name for item in kselftests]
    if given:
        found = _built_in(Path(given), names)
        if found is not None:
            return found
    from uffdprobe.kbuild import kselftest as build  # not in a guest: its host hands it the built folder

    if given:
        if not (Path(given).is_file() or _is_source_tree(Path(given))):
            raise UsageError(
                f"--kselftest-from {given}: neither built selftests ({', '.join(names)}), a tuxmake "
                "folder with kselftest.tar.xz, nor a kernel source tree or tarball"
            )
        return build.ensure(tarball=Path(given), programs=_programs(names), progress=progress).bin
    kernel = getattr(spec, "path", None) if getattr(spec, "kind", None) == "tuxmake" else None
    found = _built_in(Path(kernel), names) if kernel else None
    if found is not None:
        return found
    recipe = getattr(spec, "recipe", None)
    if recipe is not None and _tree_has(recipe.source, names):  # the kernel under test's own selftests
        return build.ensure(tarball=recipe.source, programs=tuple(names), progress=progress).bin
    return build.ensure(programs=_programs(names), progress=progress).bin


def _programs(names: List[str]) -> Tuple[str, ...]:
    """The default build's programs plus any other asked for (the default set shares one cache entry)."""
    from uffdprobe.kbuild import kselftest as build

    return tuple(build.PROGRAMS) + tuple(n for n in names if n not in build.PROGRAMS)


def _built_in(folder: Path, names: List[str]) -> Optional[Path]:
    """The folder holding every program built, itself or its mm/ (kselftest_install/mm, ...); for a
    tuxmake folder, in its kselftest.tar.xz unpacked. None when there is no such folder."""
    if (folder / "metadata.json").is_file():  # a tuxmake folder (vm.tuxmake, imported only then)
        from uffdprobe.vm import tuxmake

        build = tuxmake.read(folder)
        if build.kselftest is None:
            return None
        from uffdprobe.vm.paths import cache_root

        folder = tuxmake.unpacked(build.kselftest, cache_root())
    if not folder.is_dir() or _is_source_tree(folder):  # nothing, or a source tree: built by binaries()
        return None
    for cand in [folder, *sorted(folder.glob("**/mm")), *sorted(folder.glob("**/vm"))]:
        if names and all(os.access(cand / n, os.X_OK) and (cand / n).is_file() for n in names):
            return cand
    return None


def _is_source_tree(folder: Path) -> bool:
    """A kernel source tree (its selftests are built), not a folder of built ones."""
    return (folder / "Makefile").is_file() and (folder / "tools" / "testing" / "selftests").is_dir()


def _tree_has(source_spec: str, names: List[str]) -> bool:
    """Whether a recipe's source tree has every one of these mm selftests (its tree unpacked once)."""
    from uffdprobe.kbuild import cache, kselftest as build, source
    from uffdprobe.kbuild.errors import KbuildError

    try:
        spec = source.parse_spec(source_spec)
        tree = (
            Path(spec.location)
            if spec.kind == "tree"
            else source.materialize(spec, cache.default_root(), progress=False).tree
        )
    except KbuildError:
        return False
    return all(n in build.available(tree) for n in names)
