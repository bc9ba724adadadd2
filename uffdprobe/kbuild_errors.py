"""Errors of the kernel builder; each carries the exit status (uffdprobe.exitcodes.Exit) it maps to."""
from .exitcodes import Exit


class KbuildError(Exception):
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


class BuildFailed(KbuildError):
    """make failed or timed out; `log` is the kept build log."""

    exit_code = Exit.BUILD_FAILED

    def __init__(self, message: str, log=None):
        super().__init__(message)
        self.log = log


class SetupError(KbuildError):
    """The machine lacks a tool, or another builder held a lock past the wait bound."""

    exit_code = Exit.SETUP
