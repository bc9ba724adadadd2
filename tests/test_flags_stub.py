# SPDX-License-Identifier: GPL-2.0-only
"""uffd/flags.pyi (what type checkers and editors see) against the enums flags.py builds from the compiled
constants: every member the build headers define is declared in the stub with the same value."""

import ast
import enum
from pathlib import Path

from uffdprobe.uffd import flags

STUB = Path(flags.__file__).with_suffix(".pyi")


def _declared():
    """{class name: {member: value}} from the stub's class bodies."""
    out = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {
                t.targets[0].id: ast.literal_eval(t.value) for t in node.body if isinstance(t, ast.Assign)
            }
    return out


def test_every_built_member_is_declared_with_its_value():
    declared = _declared()
    for enum_type in (flags.Feature, flags.Ioctl, flags.RegisterMode, flags.PageFaultFlag, flags.Event):
        built = {m.name: int(m.value) for m in enum_type}
        assert built, f"{enum_type.__name__} has no members: the compiled constants are missing"
        stub = declared[enum_type.__name__]
        assert {k: stub.get(k) for k in built} == built, enum_type.__name__


def test_the_stub_declares_nothing_flags_py_lacks():
    public = {name for name in vars(flags) if not name.startswith("_")} - {"enum", "absent", "constants"}
    tree = ast.parse(STUB.read_text())
    stub_names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    stub_names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    assert stub_names <= public, stub_names - public
    assert all(isinstance(getattr(flags, n), (type, dict, int)) or callable(getattr(flags, n)) for n in stub_names)
    assert issubclass(flags.Feature, enum.IntFlag)
