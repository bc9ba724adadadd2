# SPDX-License-Identifier: GPL-2.0-only
"""Users' scenarios in a guest: the guest's `uffdprobe run` loads the same files and entry points from the
host root (read-only), so each must be somewhere the guest sees, and the argv names the files again."""

from typing import List, Sequence

from uffdprobe.exitcodes import UsageError
from uffdprobe.scenarios import sources


def check_visible(private_dirs: Sequence[str]) -> None:
    """Refuse, before any build or boot, a user source whose file lies where the guest mounts its own
    filesystem (under /tmp, /run, ...): the guest could not load it and would know none of its scenarios."""
    from uffdprobe.vm.boot import host_paths_needed

    kept = host_paths_needed()  # the interpreter's own folders: the guest binds them back (vm.boot.keep_visible)
    for source in sources.sources():
        for path in source.paths:
            hidden = [d for d in private_dirs if path == d or path.startswith(d + "/")]
            if hidden and not any(path.startswith(k.rstrip("/") + "/") for k in kept):
                raise UsageError(
                    f"{source.label}: {path} is under {hidden[0]}, which the guest covers with "
                    "its own filesystem; move it elsewhere (the guest sees the rest of the host "
                    "root, read-only)"
                )


def guest_args() -> List[str]:
    """--scenarios-from for every file loaded here (absolute, resolved paths)."""
    return [word for path in sources.files() for word in ("--scenarios-from", path)]


def check_visible_to(targets) -> None:
    """check_visible, when any of these run.kernels Targets boots a guest (a recipe or a kernel file)."""
    if any(t.path or t.recipe is not None for t in targets):
        from uffdprobe.vm.boot import GUEST_PRIVATE_DIRS

        check_visible(GUEST_PRIVATE_DIRS)
