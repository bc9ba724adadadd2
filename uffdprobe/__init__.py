# SPDX-License-Identifier: GPL-2.0-only
"""uffdprobe: drive userfaultfd from Python and reproduce kernel mm regressions on real kernels.

The subpackages are the stages of the data flow, each importing only the ones before it in this list:
osutil (processes, locks, whole files) -> uffd (the bindings) -> scenarios -> supervise -> results
(verdict files, matrix, reports) -> kbuild (recipe to bzImage) -> vm (boot in QEMU) -> run (host, guest,
matrix) -> bisect -> cli. exitcodes and verdicts (the verdict model) are shared by all;
pytest_plugin and __main__ sit on top.
"""

import functools

__all__ = ["__version__", "version", "version_info", "git_describe"]

#: The release, as the package metadata and every output name it.
__version__ = "0.1.0"


@functools.lru_cache(maxsize=None)
def git_describe():
    """`git describe --tags --always --dirty` of the checkout uffdprobe runs from, None when installed
    from a wheel or sdist (or when git cannot say)."""
    import subprocess
    from uffdprobe.osutil.datafiles import checkout

    root = checkout()
    if root is None or not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--tags", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def version() -> str:
    """What made an output: '0.1.0', or '0.1.0 (git 1d9ea42-dirty)' when run from a checkout."""
    described = git_describe()
    return f"{__version__} (git {described})" if described else __version__


def version_info() -> dict:
    """The same as fields for JSON outputs: {'version': '0.1.0', 'git': '1d9ea42-dirty' or None}."""
    return {"version": __version__, "git": git_describe()}
