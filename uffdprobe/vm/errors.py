# SPDX-License-Identifier: GPL-2.0-only
"""Errors the VM runner raises for bad input or a broken host setup, each with its exit status."""

from uffdprobe.exitcodes import Exit, UffdprobeError


class VmInputError(UffdprobeError, ValueError):
    """The caller gave something the runner cannot boot (missing file, not a kernel, bad option)."""

    exit_code = Exit.USAGE


class VmSetupError(UffdprobeError, RuntimeError):
    """The host lacks something a boot needs (a QEMU binary, a tool, a kernel feature)."""

    exit_code = Exit.SETUP
