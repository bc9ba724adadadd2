# SPDX-License-Identifier: GPL-2.0-only
"""What a kernel argument means, checked before anything is built or booted.

One grammar for `run --kernel`, `matrix --kernel`, `boot KERNEL` and the pytest plugin's
`--uffd-kernel`: `host` (the running kernel), a recipe name (vm-images/recipes), a recipe .toml
path anywhere, a bzImage/vmlinuz, a Debian linux-image .deb, or a tuxmake output folder (vm/tuxmake.py);
each optionally `LABEL=KERNEL`.
An argument that is itself an existing file, a recipe name or `host` is never split, so a
path holding '=' still works; otherwise the text before the first '=' is the label. Default
labels are short and unique: `host`, the recipe's name, or the file name plus 8 hex digits of its
content hash (two bzImages of one name get two labels).
"""

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from uffdprobe.exitcodes import UsageError

HOST = "host"
KINDS = ("host", "recipe", "recipe-file", "image", "deb", "tuxmake")
GRAMMAR = (
    "give 'host', a recipe name, a recipe .toml path, a bzImage/vmlinuz, a linux-image .deb or a "
    "tuxmake output folder, optionally as LABEL=KERNEL"
)


@dataclass(frozen=True)
class KernelSpec:
    """A resolved kernel argument: its label, its kind (one of KINDS) and what it points at."""

    label: str
    kind: str
    arg: str  # the argument as given, label included
    path: Optional[Path] = None  # the recipe file, image or .deb (absolute); None for host and recipe names
    recipe: object = None  # kbuild.recipes.Recipe for recipe and recipe-file
    labelled: bool = False  # the label was given (LABEL=...), not made up
    sha256: Optional[str] = None  # the content hash of an image or .deb

    @property
    def recipe_ref(self) -> Optional[str]:
        """What kbuild.recipes.load() takes for this kernel: the recipe's name or its file's path."""
        if self.kind == "recipe":
            return self.recipe.path.stem  # the name it was found by (its TOML `name` may differ)
        if self.kind == "recipe-file":
            return str(self.path)
        return None


def split_label(arg: str) -> Tuple[Optional[str], str]:
    """(label or None, kernel text); no split when the whole argument already names a kernel."""
    if _names_a_kernel(arg) or "=" not in arg or "/" in arg.partition("=")[0]:
        return None, arg  # a label holds no '/': "dir=x/bzImage" is a path
    label, _, rest = arg.partition("=")
    return label, rest


def resolve(arg: str, option: str = "--kernel") -> KernelSpec:
    """The KernelSpec of one argument; UsageError (one line, exit 2) when it names no usable kernel.

    A recipe is loaded with its fragments, patches and source checked, an image's boot header
    is read, a .deb's archive header is checked: nothing is built, unpacked or booted."""
    if not arg or not arg.strip():
        raise UsageError(f"{option} {arg!r} is empty: {GRAMMAR}")
    label, text = split_label(arg)
    if label is not None:
        if not label.strip() or label != label.strip():
            raise UsageError(f"{option} {arg}: {label!r} is not a label (not empty, no spaces at its ends); {GRAMMAR}")
        if not text:
            raise UsageError(f"{option} {arg}: nothing after '{label}='; {GRAMMAR}")
    spec = _resolve_unlabelled(text, option, arg)
    if label is None:
        return spec
    return KernelSpec(label, spec.kind, arg, spec.path, spec.recipe, labelled=True, sha256=spec.sha256)


def resolve_all(args: List[str], option: str = "--kernel") -> List[KernelSpec]:
    """Every argument resolved, in order; the first bad one, a kernel given twice or two kernels
    with one label is a UsageError before any of them is built or booted."""
    specs = [resolve(a, option) for a in args]
    by_label, by_kernel = {}, {}
    for spec in specs:
        what = (spec.kind, str(spec.path or spec.recipe_ref or ""))
        if what in by_kernel:
            raise UsageError(
                f"the same kernel is given twice ({by_kernel[what].arg}, {spec.arg}); give each kernel once"
            )
        if spec.label in by_label:
            other = by_label[spec.label]
            raise UsageError(
                f"{option} {other.arg} and {spec.arg} are both labelled {spec.label!r}: tell them "
                f"apart as LABEL=KERNEL, e.g. old={other.path or other.arg}"
            )
        by_label[spec.label], by_kernel[what] = spec, spec
    return specs


def bootable(spec: KernelSpec, progress: bool = True) -> Optional[str]:
    """The file QEMU boots for `spec`: a recipe is built (or taken from the cache) now; None for host."""
    if spec.kind == "host":
        return None
    if spec.kind in ("image", "deb", "tuxmake"):
        return str(spec.path)
    from uffdprobe.kbuild import build as kbuild

    return str(kbuild.build(spec.recipe, progress=progress).bzimage)


def _names_a_kernel(text: str) -> bool:
    from uffdprobe.kbuild import recipes

    return text == HOST or text in recipes.names() or Path(text).is_file() or Path(text).is_dir()


def _resolve_unlabelled(text: str, option: str, arg: str) -> KernelSpec:
    from uffdprobe.kbuild import recipes

    if text == HOST:
        return KernelSpec(HOST, "host", arg)
    path = Path(text)
    if path.is_dir():
        from uffdprobe.vm import tuxmake
        from uffdprobe.vm.errors import VmInputError

        if not tuxmake.is_tuxmake(path):
            raise UsageError(
                f"{option} {arg} is a directory but no tuxmake output folder (metadata.json and "
                f"bzImage); {GRAMMAR} (a tree is built from a recipe: source = that directory)"
            )
        try:
            build = tuxmake.read(path)
        except VmInputError as exc:
            raise UsageError(f"{option} {arg}: {exc}") from None
        sha256 = _checked_image_sha256(build.image, option, arg)
        name = (build.metadata.get("source") or {}).get("kernelrelease") or path.resolve().name
        return KernelSpec(f"{safe(name)}-{sha256[:8]}", "tuxmake", arg, path.resolve(), sha256=sha256)
    if path.is_file():
        if path.suffix == ".toml":
            recipe = _checked_recipe(str(path), option, arg)
            return KernelSpec(recipe.name, "recipe-file", arg, path.resolve(), recipe)
        kind = "deb" if path.suffix == ".deb" else "image"
        if kind == "deb":
            _check_deb(path, option, arg)
            sha256 = _hash(path, option, arg)
        else:
            sha256 = _checked_image_sha256(path, option, arg)
        return KernelSpec(f"{safe(path.name)}-{sha256[:8]}", kind, arg, path.resolve(), sha256=sha256)
    if text in recipes.names():
        recipe = _checked_recipe(text, option, arg)
        return KernelSpec(recipe.name, "recipe", arg, None, recipe)
    close = difflib.get_close_matches(text, ["host"] + recipes.names(), 1)
    raise UsageError(
        f"{option} {arg}: not 'host', not a file, not a recipe; "
        + (f"did you mean {close[0]}? " if close else "")
        + f"{GRAMMAR}; recipes: "
        f"{', '.join(recipes.names())}"
    )


def _checked_recipe(ref: str, option: str, arg: str):
    """The recipe with every input it names checked: fragments, patches, source location."""
    from uffdprobe.kbuild import config, patches, recipes, source
    from uffdprobe.kbuild.errors import KbuildError

    try:
        recipe = recipes.load(ref)
        for fragment in recipe.fragments:
            config.read_fragment(fragment)
        patches.load_series(recipe.patches)
        source.parse_spec(recipe.source)
    except KbuildError as exc:
        raise UsageError(f"{option} {arg}: {exc}") from None
    return recipe


def _checked_image_sha256(path: Path, option: str, arg: str) -> str:
    """The image's content hash, read once with its boot header (vm.kernel.identify_image)."""
    from uffdprobe.vm.errors import VmInputError
    from uffdprobe.vm.kernel import identify_image

    try:
        return identify_image(path).sha256
    except VmInputError as exc:
        raise UsageError(f"{option} {arg}: {exc}") from None


def _check_deb(path: Path, option: str, arg: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise UsageError(f"{option} {arg} cannot be read ({exc.strerror}); {GRAMMAR}") from None
    if head != b"!<arch>\n":
        raise UsageError(f"{option} {arg} is not a Debian package (no ar archive header); {GRAMMAR}")


def _hash(path: Path, option: str, arg: str) -> str:
    from uffdprobe.osutil.files import sha256_file

    try:
        return sha256_file(path)
    except OSError as exc:
        raise UsageError(
            f"{option} {arg}: cannot read {path} ({exc.strerror}); make it readable "
            f"(chmod a+r {path}) or give another kernel"
        ) from None


def safe(label: str) -> str:
    """A label or file name as a folder name and JUnit classname part: letters, digits, - . _ only."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in Path(label).name) or "kernel"
