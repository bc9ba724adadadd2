# SPDX-License-Identifier: GPL-2.0-only
"""Every exit status uffdprobe returns, in one place."""

import enum


class Exit(enum.IntEnum):
    OK = 0  #: every verdict PASS, SKIP or declared for that kernel, scenario and memory kind
    KERNEL_PROBLEM = 1  #: a verdict of verdicts.KERNEL_PROBLEMS (HANG, LEAK, WP_LOST, FAIL, STUCK, WARN, OOPS, REFUSED) nothing declares
    USAGE = 2  #: bad input: unknown scenario or kernel, bad path, bad parameter
    PATCH_FAILED = 3  #: a patch does not apply
    CONFIG_DROPPED = 4  #: Kconfig dropped an option a fragment asked for, or the guest cannot boot without one
    BUILD_FAILED = 5  #: the kernel build failed
    NO_SPACE = 6  #: a disk filled up (cache, run directory, output); what was written is kept
    SETUP = 2  #: the harness or its set-up failed (an ERROR verdict): same status as bad input
    UNEXPECTED = 7  #: matrix: a cell is not what was declared (REGRESSION, FIXED) or has no answer; check: NO ANSWER
    NO_UFFD_PERMISSION = 8  #: userfaultfd refused (EPERM/EACCES): every scenario SKIPped, results kept
    PANIC = 10  #: the guest kernel panicked
    BOOT_FAIL = 11  #: the guest never reached init
    VM_TIMEOUT = 12  #: the VM hit its overall or console-silence limit
    VM_KILLED = 13  #: QEMU was killed from outside uffdprobe (not a limit, not a guest panic)
    CHANNEL_LOST = 14  #: the guest lost its results channel before its last verdict
    INTERRUPTED = 130  #: SIGINT/SIGTERM; everything produced so far is kept
    BROKEN_PIPE = 141  #: the reader of our output went away (`uffdprobe list | head`): 128 + SIGPIPE, the shell's
    #: status for a writer its pipe stopped, so `set -o pipefail` scripts see the usual code


class UffdprobeError(Exception):
    """An error uffdprobe expects: str() is one line saying what happened and what to do, `exit_code` the
    status the command ends with. cli/main.py prints and maps every one of them, in one place."""

    exit_code: int = Exit.SETUP

    def __init__(self, message: str = "", exit_code: "int | None" = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def context(self, what: str) -> "UffdprobeError":
        """The same error (and exit status) with `what: ` before its message."""
        return UffdprobeError(f"{what}: {self}", self.exit_code)


class UsageError(UffdprobeError):
    """Bad input the user can fix: printed as one line, exit 2."""

    exit_code = Exit.USAGE
