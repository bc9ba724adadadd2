# SPDX-License-Identifier: GPL-2.0-only
"""Which kernels a run or matrix is about: labels, content identities, declared verdicts, the build."""

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil.files import sha256_file
from uffdprobe.verdicts import Result
from . import kernel_arg

HOST = "host"
#: A label given as LABEL=KERNEL: short, and safe as a folder name, a JUnit classname part and an --expect key.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,47}$")
#: The content hash digits in a results folder's name.
SHORT = 12


@dataclass
class Target:
    """One kernel to run: its label, what to boot (None: the running kernel), build identity, expectations.

    `given` is the --kernel value as typed; `sha256` the content hash of what is booted (None for host
    and for a recipe until it is built)."""

    label: str
    path: Optional[str] = None
    recipe: Optional[str] = None
    identity: Dict[str, object] = field(default_factory=dict)
    expect: Dict[str, str] = field(default_factory=dict)
    build_error: Optional[str] = None
    given: str = ""
    sha256: Optional[str] = None
    kselftest: List[str] = field(default_factory=list)  # a recipe's own selftests (recipe field kselftest)

    def key(self) -> str:
        """The short content hash that names this kernel's results folder: the booted file's, or the
        running kernel's release and version, or the recipe's (before its build, when it failed)."""
        if self.path:
            if self.sha256 is None:
                self.sha256 = sha256_file(Path(self.path))
            return self.sha256[:SHORT]
        if self.recipe:
            return hashlib.sha256(f"recipe:{self.recipe}".encode()).hexdigest()[:SHORT]
        uname = os.uname()
        return hashlib.sha256(f"host:{uname.release} {uname.version}".encode()).hexdigest()[:SHORT]

    def owns(self, r: Result) -> bool:
        """Whether a Result read back from disk was produced by this kernel (identity checked, not assumed)."""
        if self.path:
            return r.kernel.get("file_sha256") == self.sha256
        return r.kernel.get("release") == os.uname().release


def check_kernels(args: List[str]) -> List[Target]:
    """Resolve and check every --kernel [LABEL=]KERNEL (run/kernel_arg.py) before any build or boot; bad
    input raises UsageError naming the fix."""
    targets = []
    for spec in kernel_arg.resolve_all(args):
        if spec.kind == "host":
            target = Target(spec.label)
        elif spec.kind in ("image", "deb"):
            target = Target(spec.label, path=str(spec.path), sha256=spec.sha256)
        elif spec.kind == "tuxmake":  # its metadata.json says what a report needs (source, compiler, config)
            from uffdprobe.vm import tuxmake

            build = tuxmake.read(Path(str(spec.path)))
            target = Target(spec.label, path=str(spec.path), sha256=spec.sha256, identity=tuxmake.identity(build))
        else:
            target = Target(
                spec.label,
                recipe=spec.recipe_ref,
                expect=dict(spec.recipe.expect),
                kselftest=list(spec.recipe.kselftest),
            )
        target.given = spec.arg
        targets.append(target)
    return targets


def parse_expect(items: List[str], targets: List[Target]) -> Dict[str, Dict[str, str]]:
    """--expect [KERNEL:]SCENARIO[/MEMORY]=VERDICT values as {kernel label or '*': {key: verdict}};
    KERNEL is a kernel's label or its --kernel value as given. Bad ones raise UsageError."""
    from uffdprobe.kbuild.errors import BadInput
    from uffdprobe.kbuild.recipes import check_expect
    from uffdprobe.results.expect import SYNTAX, parse as parse_declaration

    names = {t.label: t.label for t in targets}
    names.update({t.given: t.label for t in targets if t.given})
    out: Dict[str, Dict[str, str]] = {}
    for item in items:
        left, sep, verdict = item.rpartition("=")
        if left.endswith(">"):  # VERDICT>=K/N: the '=' of '>=' is not the separator
            left, sep, head = left[:-1].rpartition("=")
            verdict = f"{head}>={verdict}"
        # KERNEL: is a prefix naming a kernel; a selftest row ('cow: CASE') holds ': ' itself
        known = [i for i, ch in enumerate(left) if ch == ":" and left[:i] in names]
        if known:
            kernel, scenario = left[: known[0]], left[known[0] + 1 :]
        elif ":" in left and ": " not in left:
            kernel, _, scenario = left.rpartition(":")  # names no kernel: refused below
        else:
            kernel, scenario = "*", left
        if not sep or not scenario:
            raise UsageError(f"--expect {item!r}: write [KERNEL:]SCENARIO[/MEMORY]=VERDICT with VERDICT {SYNTAX}")
        try:
            parse_declaration(verdict)
        except ValueError as exc:
            raise UsageError(f"--expect {item!r}: write [KERNEL:]SCENARIO[/MEMORY]=VERDICT: {exc}") from None
        if kernel != "*" and kernel not in names:
            raise UsageError(
                f"--expect {item!r}: {kernel} is not one of the --kernel values or labels "
                f"({', '.join(sorted(names.values()))})"
            )
        try:
            check_expect({scenario: verdict}, f"--expect {item!r}")
        except BadInput as exc:
            raise UsageError(str(exc)) from None
        scope = out.setdefault(names.get(kernel, kernel), {})
        if scope.get(scenario, verdict) != verdict:
            raise UsageError(
                f"--expect {item!r} contradicts the earlier --expect declaring "
                f"{scenario}={scope[scenario]}{' on ' + kernel if kernel != '*' else ''}: "
                "declare each verdict once"
            )
        scope[scenario] = verdict
    return out


def declare(targets: List[Target], overrides: Dict[str, Dict[str, str]]) -> None:
    """Add --expect declarations to each target's recipe ones: for every kernel, then for that label."""
    from uffdprobe.results.expect import split_key

    for t in targets:
        for key, verdict in [*overrides.get("*", {}).items(), *overrides.get(t.label, {}).items()]:
            if split_key(key)[1] is None:  # SCENARIO=V overrides the recipe's SCENARIO/MEMORY ones too
                t.expect = {
                    k: v for k, v in t.expect.items() if not (split_key(k)[0] == key and split_key(k)[1] is not None)
                }
            t.expect[key] = verdict


def build(target: Target, say: Callable[[str], None]) -> None:
    """Build (or take from cache) a recipe kernel; a build failure is recorded, not raised."""
    if target.recipe is None:
        return
    from uffdprobe.kbuild import build as kbuild
    from uffdprobe.kbuild.errors import BadInput, KbuildError

    say(f"{target.label}: building or taking from the cache")
    try:
        built = kbuild.resolve_kernel(target.recipe)
    except BadInput as exc:
        raise UsageError(f"--kernel {target.label}: {exc}") from None
    except KbuildError as exc:
        target.build_error = f"{type(exc).__name__}: {exc}"
        target.identity = _unbuilt_identity(target.recipe)  # a report still names what did not build
        log = getattr(exc, "log", None)
        if log:  # a failed make's log, kept beside the kernel's results
            target.identity["build_log"] = str(log)
        say(f"{target.label}: build failed: {target.build_error}")
        return
    target.path = str(built.bzimage)
    target.sha256 = sha256_file(built.bzimage)  # now, while held: a later read of a removed image cannot crash
    keep = (
        "key",
        "name",
        "version",
        "config_sha256",
        "patches",
        "fragments",
        "compiler",
        "built_at",
        "source",
        "source_spec",
        "base",
    )  # the source identity is what a KCIDB checkout needs
    from uffdprobe.kbuild import recipes

    target.identity = {
        "recipe": target.recipe,
        "summary": recipes.load(target.recipe).summary,
        "cached": built.cached,
        **{k: built.identity.get(k) for k in keep if k in built.identity},
        "build_log": str(built.log) if built.log else None,
        "config_file": str(built.config),
    }


def _unbuilt_identity(ref: str) -> dict:
    """What a recipe says of a kernel that did not build: its source's identity and its patch series."""
    from uffdprobe.kbuild import cache, recipes, source
    from uffdprobe.kbuild.errors import KbuildError

    recipe = recipes.load(ref)
    out: Dict[str, object] = {
        "recipe": ref,
        "summary": recipe.summary,
        "source_spec": recipe.source,
        "patches": [{"name": Path(p).name, "sha256": sha256_file(Path(p))} for p in recipe.patches],
    }
    try:
        out["source"] = source.identify(source.parse_spec(recipe.source), cache.default_root())
    except (KbuildError, OSError):
        pass
    return out


def owner(target: Target) -> dict:
    """Who a results folder belongs to: label, what was given, and the content hash of the kernel."""
    return {"label": target.label, "given": target.given, "path": target.path, "key": target.key()}
