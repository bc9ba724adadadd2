# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe kernel ...`: build, list and clean cached kernels (argparse wiring for cli.py).

Exit statuses (uffdprobe.exitcodes.Exit): 0 built or cached; 2 bad input (missing source,
not a kernel tree, unknown ref or recipe, malformed recipe, unreadable patch/fragment) or setup
(missing tool, lock held past the wait bound); 3 a patch does not apply; 4 Kconfig dropped a
fragment option; 5 the build failed; 6 the cache's disk is full; 130 interrupted (make stopped
and reaped, locks released, nothing half-installed).
"""

import argparse
import sys
import time
from pathlib import Path

from uffdprobe.kbuild import build as kbuild, clean as kbuild_clean, recipes
from uffdprobe.osutil import children
from uffdprobe.exitcodes import Exit, UffdprobeError, UsageError


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `kernel` (build/list/clean) on an argparse subparsers object; handlers return an exit status."""
    kernel = subparsers.add_parser(
        "kernel",
        help="build, list and clean kernels (recipes in vm-images/)",
        description="Build kernels from recipes or from a source, cached by content.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir", type=Path, default=None, help="kernel cache (default $XDG_CACHE_HOME/uffdprobe/kernels)"
    )
    sub = kernel.add_subparsers(dest="kernel_command", metavar="{build,list,clean}")
    sub.required = True

    b = sub.add_parser(
        "build",
        parents=[common],
        help="build a recipe, or a --source with patches and fragments",
        description="Build a kernel; prints the bzImage path on stdout.",
    )
    b.add_argument("recipe", nargs="?", help=f"recipe name ({', '.join(recipes.names())}) or .toml path")
    b.add_argument(
        "--source", help=f"extracted tree, tarball, or GIT_TREE@REF (default {kbuild.kbuild_source.DEFAULT_TARBALL})"
    )
    b.add_argument(
        "--patch",
        action="append",
        default=[],
        metavar="FILE",
        help="unified diff or git format-patch/mbox file, applied in order (repeatable)",
    )
    b.add_argument(
        "--config-fragment",
        action="append",
        default=[],
        metavar="FILE",
        help=f"Kconfig fragment (repeatable; default {kbuild.DEFAULT_FRAGMENT.name})",
    )
    b.add_argument("--base", default="tinyconfig", choices=sorted(recipes.BASES), help="base config target")
    b.add_argument("--jobs", "-j", type=int, default=None, help="make -j (default: CPUs + 1)")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    b.set_defaults(func=run_build, error_prefix="uffdprobe kernel build")

    ls = sub.add_parser(
        "list", parents=[common], help="list cached kernels", description="List the kernels in the cache."
    )
    ls.add_argument(
        "--recipes",
        action="store_true",
        help="list the recipes instead ($UFFDPROBE_RECIPES, ~/.config/uffdprobe/recipes, shipped)",
    )
    ls.set_defaults(func=run_list, error_prefix="uffdprobe kernel list")

    cl = sub.add_parser(
        "clean", parents=[common], help="remove cached kernels", description="Remove built kernels from the cache."
    )
    cl.add_argument("--all", action="store_true", help="also remove unpacked sources and build workspaces")
    cl.set_defaults(func=run_clean, error_prefix="uffdprobe kernel clean")
    return kernel


def run_build(args) -> int:
    """Handler of `kernel build`."""
    if args.recipe and (args.source or args.patch or args.config_fragment):
        raise UsageError("give either a RECIPE or --source/--patch/--config-fragment, not both")
    try:
        if args.recipe:
            what = recipes.load(args.recipe)
        else:
            fragments = tuple(Path(f) for f in args.config_fragment) or (kbuild.DEFAULT_FRAGMENT,)
            what = kbuild.BuildSpec(
                source=args.source or "",
                base=args.base,
                fragments=fragments,
                patches=tuple(Path(p) for p in args.patch),
                name="custom",
            )
        with children.signals_raise(KeyboardInterrupt):  # make's process group is killed and reaped
            built = kbuild.build(what, progress=not args.quiet, cache_dir=args.cache_dir, jobs=args.jobs)
    except KeyboardInterrupt:
        raise UffdprobeError("interrupted; the cache holds only complete kernels", Exit.INTERRUPTED) from None
    how = "cached" if built.cached else "built"
    if not args.quiet:
        print(
            f"kbuild [{built.identity.get('name')}]: {how} {built.identity.get('version')} "
            f"key {built.key[:12]} in {built.seconds:.1f} s",
            file=sys.stderr,
        )
    print(built.bzimage)
    return int(Exit.OK)


def run_list(args) -> int:
    """Handler of `kernel list`."""
    if args.recipes:
        for name in recipes.names():
            recipe = recipes.load(name)
            origin = "" if recipe.path.parent == recipes.RECIPE_DIR else f"  ({recipe.path})"
            print(f"{name:24} {len(recipe.patches)} patch(es)  {recipe.summary}{origin}")
        return int(Exit.OK)
    entries = kbuild.list_kernels(args.cache_dir)
    if not entries:
        print("no kernels cached; build one with: uffdprobe kernel build stock", file=sys.stderr)
    for entry in entries:
        ident = entry.identity
        when = ident.get("built_at", "")[:16].replace("T", " ")
        print(
            f"{entry.path.name[:12]}  {ident.get('name', '?'):26} {ident.get('version', '?'):10} "
            f"{len(ident.get('patches', []))} patch(es)  {when}  {entry.bzimage}"
        )
    return int(Exit.OK)


def run_clean(args) -> int:
    """Handler of `kernel clean`."""
    started = time.monotonic()
    removed = kbuild_clean.clean(args.cache_dir, everything=args.all)
    for path in removed:
        print(f"removed {path}", file=sys.stderr)
    print(f"kernel cache cleaned in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return int(Exit.OK)
