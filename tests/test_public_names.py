# SPDX-License-Identifier: GPL-2.0-only
"""What users import is declared (`__all__`) and documented: every name of each public module's __all__
exists, and carries a docstring of its own (a module, class or function) or a `#:` comment where it is
assigned (a constant)."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import uffdprobe

#: The modules users import from (docs/user-guide.md, README "Under pytest").
PUBLIC = ["uffdprobe", "uffdprobe.pytest_plugin", "uffdprobe.scenarios.api"]
PACKAGE = Path(uffdprobe.__file__).resolve().parent


def _own_doc(obj) -> str:
    """The docstring written for `obj` itself, not one it inherits from its class or a base."""
    if inspect.isclass(obj):
        return vars(obj).get("__doc__") or ""
    if inspect.ismodule(obj) or inspect.isroutine(obj):
        return obj.__doc__ or ""
    if callable(obj) and type(obj).__doc__ != obj.__doc__:  # a wrapped function, e.g. a pytest fixture
        return obj.__doc__ or ""
    return ""


def _documented_assignment(name: str, value) -> list:
    """The modules that assign `name` at top level to `value` with a `#:` comment (above or trailing): a
    constant, or a class the enum functional API made."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if name not in text:
            continue
        lines = text.splitlines()
        for node in ast.parse(text).body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
                continue
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if above.startswith("#:") or "#:" in lines[node.lineno - 1]:
                module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
                if getattr(importlib.import_module(module), name, None) is value:
                    found.append(module)
    return found


@pytest.mark.parametrize("module_name", PUBLIC)
def test_every_public_name_exists_and_is_documented(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names and len(names) == len(set(names)), f"{module_name} declares no __all__ (or a repeat)"
    undocumented = []
    for name in names:
        assert hasattr(module, name), f"{module_name}.__all__ names {name}, which it does not have"
        value = getattr(module, name)
        if _own_doc(value).strip():
            continue
        if inspect.ismodule(value) or not _documented_assignment(name, value):
            undocumented.append(name)
    assert not undocumented, f"{module_name}: no docstring or #: comment for {undocumented}"


def test_star_import_gives_exactly_all():
    """`from M import *` is what __all__ says, and the plugin's fixtures are in it."""
    for module_name in PUBLIC:
        space: dict = {}
        exec(f"from {module_name} import *", space)  # the import a user writes
        assert set(space) - {"__builtins__"} == set(importlib.import_module(module_name).__all__)
    from uffdprobe import pytest_plugin

    assert {"uffd_kernel", "uffd_verdict"} <= set(pytest_plugin.__all__)
