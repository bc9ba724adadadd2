"""Kernel recipes: one TOML file each in vm-images/recipes/ (source, fragments, patch series, expectations)."""
from dataclasses import dataclass, field
from pathlib import Path

from .kbuild_errors import BadInput

try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

VM_IMAGES = Path(__file__).resolve().parent.parent / "vm-images"
RECIPE_DIR = VM_IMAGES / "recipes"
VERDICTS = {"PASS", "HANG", "LEAK", "WP_LOST", "SKIP", "ERROR", "NOT_HANG", "NOT_LEAK", "ANY"}
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
    path: Path = None


def names() -> list:
    """Recipe names found in vm-images/recipes/."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load(name_or_path) -> Recipe:
    """Load a recipe by name (vm-images/recipes/NAME.toml) or by path to a .toml file."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        path = RECIPE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise BadInput(f"unknown kernel recipe {name_or_path!r}: choose one of {', '.join(names()) or '(none)'}"
                       " or give a path to a .toml recipe")
    if tomllib is None:
        raise BadInput("reading recipes needs Python 3.11 (tomllib) or the tomli package: pip install tomli")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"recipe {path} cannot be read: {exc}; fix the TOML") from None
    return _from_dict(data, path)


def _from_dict(data: dict, path: Path) -> Recipe:
    known = {"name", "summary", "source", "base", "fragments", "patches", "models", "expect"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInput(f"recipe {path}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    base = data.get("base", "tinyconfig")
    if base not in BASES:
        raise BadInput(f"recipe {path}: base {base!r} is not one of {', '.join(sorted(BASES))}")
    expect = dict(data.get("expect", {}))
    bad = {k: v for k, v in expect.items() if v not in VERDICTS}
    if bad:
        raise BadInput(f"recipe {path}: unknown expected verdict(s) {bad}; use {', '.join(sorted(VERDICTS))}")
    here = path.parent.parent if path.parent.name == "recipes" else path.parent
    return Recipe(
        name=data.get("name", path.stem),
        summary=data.get("summary", ""),
        source=str(data.get("source", "")),
        base=base,
        fragments=tuple(_resolve(here, f, path, "fragment") for f in data.get("fragments", [])),
        patches=tuple(_resolve(here, p, path, "patch") for p in data.get("patches", [])),
        models=dict(data.get("models", {})),
        expect=expect,
        path=path,
    )


def _resolve(base: Path, rel: str, recipe: Path, what: str) -> Path:
    full = (base / rel).resolve()
    if not full.is_file():
        raise BadInput(f"recipe {recipe}: {what} {rel} not found (looked in {base}); fix the path")
    return full
