# SPDX-License-Identifier: GPL-2.0-only
"""Errors of the kernel builder; each carries the exit status (uffdprobe.exitcodes.Exit) it maps to."""

from uffdprobe.exitcodes import Exit, UffdprobeError


class KbuildError(UffdprobeError):
    """A kernel build that cannot go on; str() is one line saying what happened and what to do."""

    exit_code = Exit.SETUP


class BadInput(KbuildError):
    """Missing source, not a kernel tree, unknown ref or recipe, unreadable patch or fragment."""

    exit_code = Exit.USAGE


class PatchDoesNotApply(KbuildError):
    """A patch of the series does not apply; names the patch, the file and the hunk."""

    exit_code = Exit.PATCH_FAILED

    def __init__(self, message: str, patch=None, file=None, hunk=None):
        super().__init__(message)
        self.patch, self.file, self.hunk = patch, file, hunk


class ConfigDropped(KbuildError):
    """Kconfig dropped options a fragment asked for; `dropped` lists (option, wanted, got)."""

    exit_code = Exit.CONFIG_DROPPED

    def __init__(self, message: str, dropped=()):
        super().__init__(message)
        self.dropped = list(dropped)


class GuestNeedsMissing(ConfigDropped):
    """The final .config lacks what a guest needs to boot under the harness; `missing` lists the options
    (a ConfigDropped, so a bisect step skips such a commit as it skips one whose config drops options)."""

    def __init__(self, message: str, missing=()):
        super().__init__(message, [(m, "y", "not set") for m in missing])
        self.missing = list(missing)


class BuildFailed(KbuildError):
    """make failed or timed out; `log` is the kept build log."""

    exit_code = Exit.BUILD_FAILED

    def __init__(self, message: str, log=None):
        super().__init__(message)
        self.log = log


class NoSpace(KbuildError):
    """The disk holding the kernel cache filled up; the message names it and what to free."""

    exit_code = Exit.NO_SPACE

    def __init__(self, message: str, log=None):
        super().__init__(message)
        self.log = log


NO_SPACE_TEXT = "No space left on device"


def no_space(root, what: str, log=None) -> NoSpace:
    """The one-line NoSpace error for a full disk under the cache `root` while doing `what`."""
    kept = f"; build log: {log}" if log else ""
    return NoSpace(
        f"no space left on the disk holding {root} while {what}: free space there "
        "(uffdprobe kernel clean --all removes workspaces) or point XDG_CACHE_HOME at a larger "
        f"disk, then build again{kept}",
        log=log,
    )


class SetupError(KbuildError):
    """The machine lacks a tool, or another builder held a lock past the wait bound."""

    exit_code = Exit.SETUP
