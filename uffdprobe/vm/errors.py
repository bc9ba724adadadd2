"""Errors the VM runner raises for bad input or a broken host setup."""


class VmInputError(ValueError):
    """The caller gave something the runner cannot boot (missing file, not a kernel, bad option)."""


class VmSetupError(RuntimeError):
    """The host lacks something a boot needs (a QEMU binary, a tool, a kernel feature)."""
