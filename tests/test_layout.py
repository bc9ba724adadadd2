# SPDX-License-Identifier: GPL-2.0-only
"""The package tree reads as the data flow: each stage imports only the stages before it, and no module
imports itself back through others (every import counted, also those inside functions)."""

import ast
from pathlib import Path

import uffdprobe

PACKAGE = Path(uffdprobe.__file__).parent
#: Lowest first: a module may import its own stage and the ones before it (uffdprobe/__init__.py says why).
STAGES = [
    "exitcodes",
    "verdicts",
    "osutil",
    "uffd",
    "scenarios",
    "supervise",
    "results",
    "kbuild",
    "vm",
    "run",
    "bisect",
    "cli",
    "pytest_plugin",
    "__main__",
]
SHARED = {"exitcodes", "verdicts"}  # the model every stage speaks: importable from anywhere, import nothing


def _modules() -> dict:
    """Dotted module name (without 'uffdprobe.') -> path, for every .py file of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set) -> set:
    """The package modules `name` imports, resolved to the longest known dotted name."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                module = ".".join(base + ([node.module] if node.module else []))
                module = "uffdprobe" + ("." + module if module else "")
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" for a in node.names] + [module]
        for target in targets:
            if target != "uffdprobe" and not target.startswith("uffdprobe."):
                continue
            dotted = target[len("uffdprobe.") :]
            while dotted and dotted not in known:
                dotted = dotted.rpartition(".")[0]
            if dotted and dotted != name:
                found.add(dotted)
    return found


def _graph() -> dict:
    modules = _modules()
    known = set(modules) | {"uffd._native"}
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _stage(module: str) -> str:
    return module.split(".")[0]


def test_top_level_holds_only_subpackages_and_a_handful_of_modules():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top <= {"__main__", "exitcodes", "verdicts", "pytest_plugin"}, top
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(STAGES) - top - {"exitcodes", "verdicts"}
    for pkg in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / pkg / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"{pkg}/__init__.py must say what it owns and what it may import"


def test_imports_only_go_down_the_pipeline():
    upward = []
    for module, targets in _graph().items():
        if not module:  # uffdprobe/__init__.py
            continue
        rank = STAGES.index(_stage(module))
        for target in targets:
            stage = _stage(target)
            if stage not in STAGES or "_native" in target:
                continue
            if (module in SHARED and target != module) or STAGES.index(stage) > rank:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the data flow: " + ", ".join(sorted(upward))


def test_no_import_circles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ is imported by each of its modules: that edge is Python's, not ours.
    real = [
        c
        for c in cycles
        if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c.split(" -> "), c.split(" -> ")[1:]))
    ]
    assert not real, "import circles: " + "; ".join(real)


def test_no_module_is_over_400_lines_without_a_reason():
    long = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > 400]
    assert not long, long


def test_the_guest_run_path_imports_no_builder_matrix_or_bisect_code():
    """`uffdprobe run` is what every guest starts: it loads the supervisor and the scenarios, nothing of the
    kernel builder, the VM runner, the matrix or bisection (each import costs seconds under TCG)."""
    import subprocess
    import sys

    code = (
        "import sys; from uffdprobe.cli.main import main; main(['list']); "
        "print(' '.join(m for m in sys.modules if m.startswith('uffdprobe.')), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = proc.stderr.split()
    assert "uffdprobe.supervise.supervisor" in loaded and "uffdprobe.scenarios.registry" in loaded
    heavy = [
        m
        for m in loaded
        if _stage(m[len("uffdprobe.") :]) in ("kbuild", "vm", "bisect")
        or m in ("uffdprobe.run.matrix", "uffdprobe.cli.matrix", "uffdprobe.run.guest")
    ]
    assert not heavy, heavy
