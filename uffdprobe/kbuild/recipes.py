# SPDX-License-Identifier: GPL-2.0-only
"""Kernel recipes: one TOML file each in vm-images/recipes/ (source, fragments, patch series, expectations).

A recipe's relative source, fragment and patch paths are relative to the folder the recipe
file is in, wherever that is (the shipped ones say ../fragments/x86_64.config).
"""

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from uffdprobe.osutil import datafiles
from uffdprobe.results.expect import SEPARATOR, parse as parse_declaration, split_key

from .errors import BadInput

try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

VM_IMAGES = datafiles.vm_images()
RECIPE_DIR = VM_IMAGES / "recipes"
#: os.pathsep-separated folders of the user's own recipes, searched before the shipped ones.
PATH_ENV = "UFFDPROBE_RECIPES"
BASES = {"tinyconfig", "allnoconfig", "defconfig"}


@dataclass(frozen=True)
class Recipe:
    """A kernel to build: paths are absolute; `expect` maps scenario -> expected verdict."""

    name: str
    summary: str = ""
    source: str = ""
    base: str = "tinyconfig"
    fragments: tuple = ()
    patches: tuple = ()
    models: dict = field(default_factory=dict)
    expect: dict = field(default_factory=dict)
    kselftest: tuple = ()
    path: Path = None


def search_path() -> list:
    """Where recipe names are looked up, first match wins: the folders in $UFFDPROBE_RECIPES, then
    $XDG_CONFIG_HOME/uffdprobe/recipes (~/.config/uffdprobe/recipes), then the recipes uffdprobe ships."""
    user = [Path(p).expanduser() for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return user + [Path(config) / "uffdprobe" / "recipes", RECIPE_DIR]


def find(name: str):
    """The .toml file of recipe `name` on the search path, None when no folder has it."""
    for folder in search_path():
        path = folder / f"{name}.toml"
        if path.is_file():
            return path
    return None


def names() -> list:
    """Recipe names found on the search path."""
    return sorted({p.stem for folder in search_path() for p in folder.glob("*.toml")})


def load(name_or_path) -> Recipe:
    """Load a recipe by name (the first NAME.toml on search_path()) or by path to a .toml file."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        path = find(str(name_or_path)) or RECIPE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        close = difflib.get_close_matches(str(name_or_path), names(), 1)
        raise BadInput(
            f"unknown kernel recipe {name_or_path!r}: "
            + (f"did you mean {close[0]}? " if close else "")
            + f"choose one of {', '.join(names()) or '(none)'} or give a path to a .toml recipe"
        )
    if tomllib is None:
        raise BadInput("reading recipes needs Python 3.11 (tomllib) or the tomli package: pip install tomli")
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(
            f"recipe {path} cannot be read ({exc.strerror}): make it readable (chmod a+r {path}) or give another recipe"
        ) from None
    try:
        data = tomllib.loads(text)
    except ValueError as exc:
        raise BadInput(f"recipe {path} is not valid TOML ({exc}); fix that line") from None
    return _from_dict(data, path)


# field -> (type, what it holds); REQUIRED ones have no default
FIELDS = {
    "name": (str, "a string"),
    "summary": (str, "a string"),
    "source": (str, 'a string: a tarball, tree or GIT_TREE@REF, e.g. "/usr/src/linux-source-6.1.tar.xz"'),
    "base": (str, f"a string, one of {', '.join(sorted(BASES))}"),
    "fragments": (list, 'a list of paths relative to the recipe file\'s folder, e.g. ["../fragments/x86_64.config"]'),
    "patches": (
        list,
        'a list of patch, mbox, saved web page or series files relative to the recipe\'s folder (in order), [] for none',
    ),
    "models": (dict, "a table"),
    "expect": (dict, 'a table of "SCENARIO" = "VERDICT" or "SCENARIO/MEMORY" = "VERDICT"'),
    "kselftest": (list, 'a list of mm selftests run with this kernel, e.g. ["cow", "uffd-unit-tests"]'),
}
REQUIRED = ("source", "patches")


def _from_dict(data: dict, path: Path) -> Recipe:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadInput(f"recipe {path}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    for key in REQUIRED:
        if key not in data:
            raise BadInput(f"recipe {path}: required field {key!r} is missing; add {key} = {FIELDS[key][1]}")
    for key, value in data.items():
        kind, holds = FIELDS[key]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
            raise BadInput(f"recipe {path}: {key} = {value!r} has the wrong type; {key} must be {holds}")
    base = data.get("base", "tinyconfig")
    if base not in BASES:
        raise BadInput(f"recipe {path}: base {base!r} is not one of {', '.join(sorted(BASES))}")
    expect = dict(data.get("expect", {}))
    check_expect(expect, f"recipe {path}: [expect]")
    here = path.resolve().parent  # relative paths are relative to the recipe file's own folder, always
    return Recipe(
        name=data.get("name", path.stem),
        summary=data.get("summary", ""),
        source=_source(here, data["source"]),
        base=base,
        fragments=tuple(_resolve(here, f, path, "fragment") for f in data.get("fragments", [])),
        patches=tuple(_resolve(here, p, path, "patch") for p in data["patches"]),
        models=dict(data.get("models", {})),
        expect=expect,
        kselftest=_kselftest(data.get("kselftest", []), path),
        path=path,
    )


def check_expect(expect: dict, where: str) -> None:
    """BadInput naming the first key whose scenario does not exist or whose memory kind that scenario
    does not run on, or the first value expect.parse refuses. Keys: SCENARIO or SCENARIO/MEMORY."""
    from uffdprobe.scenarios.registry import SCENARIOS
    from uffdprobe.scenarios.memkinds import NO_MEMORY
    from uffdprobe.scenarios.rows import is_program_row
    from uffdprobe.supervise.kselftest import PROGRAMS, is_selftest_row

    for key, verdict in expect.items():
        scenario, memory = split_key(key)
        slash = memory is not None
        if scenario not in SCENARIOS and (is_program_row(scenario) or is_selftest_row(scenario)):
            if slash and memory != NO_MEMORY:  # an --exec program's or a selftest's row: memory is always "-"
                raise BadInput(
                    f"{where}: {key!r}: {scenario} is a program's or a selftest's row, which has no "
                    f"memory kind; write {scenario!r} or '{scenario}{SEPARATOR}{NO_MEMORY}'"
                )
        elif scenario not in SCENARIOS:
            public = [name for name, s in SCENARIOS.items() if not s.test_only]
            close = difflib.get_close_matches(scenario, public, 1)
            raise BadInput(
                f"{where}: unknown scenario {scenario!r}; "
                + (f"did you mean {close[0]}? " if close else "")
                + f"use one of {', '.join(public)}"
                f" (uffdprobe list), a program's row, or a selftest row 'PROGRAM' / 'PROGRAM: CASE' "
                f"of {', '.join(PROGRAMS)}"
            )
        elif slash and memory not in SCENARIOS[scenario].memory:
            raise BadInput(
                f"{where}: {key!r}: {scenario} does not run on memory kind {memory!r}; use one of "
                f"{', '.join(SCENARIOS[scenario].memory)} after the '/'"
            )
        try:
            parse_declaration(verdict)
        except ValueError as exc:
            raise BadInput(f"{where}: {key} = {exc}") from None


def _kselftest(items: list, path: Path) -> tuple:
    """A recipe's kselftest list, each a known selftest (supervise.kselftest.PROGRAMS)."""
    from uffdprobe.supervise.kselftest import PROGRAMS, parse_request

    for item in items:
        try:
            parse_request(item)
        except (KeyError, ValueError):
            raise BadInput(
                f"recipe {path}: kselftest {item!r} is not a selftest's name ({', '.join(PROGRAMS)} or another "
                "mm selftest program's name)"
            ) from None
    return tuple(items)


def _source(here: Path, text: str) -> str:
    """A relative source path (tree, tarball or GIT_TREE@REF) made absolute against the recipe's folder."""
    if not text or "://" in text or os.path.isabs(text):
        return text
    location, at, ref = text.rpartition("@") if "@" in text else (text, "", "")
    return os.path.normpath(here / location) + (f"@{ref}" if at else "")


def _resolve(base: Path, rel: str, recipe: Path, what: str) -> Path:
    """`rel` relative to the recipe's own folder, else in the shipped vm-images, so a user's recipe
    can name the shipped fragments and patch series."""
    for folder in dict.fromkeys((base, VM_IMAGES)):
        full = (folder / rel).resolve()
        if full.is_file():
            return full
    raise BadInput(f"recipe {recipe}: {what} {rel} not found (looked in {base} and {VM_IMAGES}); fix the path")
