# SPDX-License-Identifier: GPL-2.0-only
"""The compiled cffi module and the header constants it carries, as a dict per group."""

from typing import Dict, Tuple

from ._native import ffi, lib

__all__ = ["ffi", "lib", "constants", "absent"]


#: group -> {header name: value}
Table = Dict[str, Dict[str, int]]


def _read_table() -> Tuple[Table, Table]:
    table: Table = {}
    missing: Table = {}
    for i in range(lib.up_nconstants):
        c = lib.up_constants[i]
        group = ffi.string(c.group).decode()
        name = ffi.string(c.name).decode()
        (table if c.present else missing).setdefault(group, {})[name] = c.value
    return table, missing


#: group -> {header name: value} for every constant the build headers define.
constants, _missing = _read_table()
#: group -> names the build headers lack (reported as unsupported, never guessed).
absent = {group: sorted(names) for group, names in _missing.items()}
