# SPDX-License-Identifier: GPL-2.0-only
"""What the guest's Python runs first: it serves the modules of the run path from one archive in memory.

Not imported in the guest: run.guest_archive stores this module's compiled code in the archive, and the
guest's `python -S -c` reads the archive with one open and one read, execs that code and calls
install(). From then on an import of a module the archive holds costs no file lookup: its bytecode is
unmarshalled from memory, and its spec names the host file it was compiled from (so __file__, data
files beside it and tracebacks read as on the host). A module the archive lacks, a submodule of an
archived package included (its __path__ is the host folder), is found on the host folders behind it;
an extension module is loaded straight from the host path recorded for it, without a search.

Two modules of the standard library compile source text they generate: dataclasses (each class's
methods) and collections (namedtuple's __new__). Under TCG that text costs more than its module: the
first compile() starts Python's parser and compiler, code the emulator has to translate first. So the
archive also holds those texts compiled on the host (run.guest_archive records them), and those modules
get an `exec` or `eval` that runs the compiled code for a text it holds.

It imports nothing: sys and the frozen import machinery are there before any import.
"""

import sys

#: The modules that run source text they generate, and the builtin each runs it with; in the order the
#: recorder patches them (importing dataclasses makes namedtuples).
GENERATED = {"collections": "eval", "dataclasses": "exec"}

TYPE_CHECKING = False  # not typing's: that import would come from the host folders, before the archive
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType


class ArchiveFinder:
    """A sys.meta_path finder and loader for the modules of one archive: {name: (host path, kind,
    bytecode)}, kind "py", "pkg", "ext" or "absent" (looked for and not found when it was made), and the
    generated texts it holds compiled: {(builtin, text): bytecode}."""

    def __init__(self, archive: str, table: dict, texts: dict):
        self.archive, self.table, self.texts = archive, table, texts

    def __repr__(self) -> str:
        return f"<ArchiveFinder {self.archive}>"

    def find_spec(self, name: str, path: object = None, target: object = None) -> "ModuleSpec | None":
        """The spec of `name` when the archive holds it, else None (the next finder looks)."""
        entry = self.table.get(name)
        if entry is None:
            return None
        origin, kind, _ = entry
        if kind == "absent":  # not there when the archive was made (nor since: its folders are unchanged)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        external = sys.modules["_frozen_importlib_external"]
        if kind == "ext":
            loader = external.ExtensionFileLoader(name, origin)
            return external.spec_from_file_location(name, origin, loader=loader)
        spec = sys.modules["_frozen_importlib"].ModuleSpec(name, self, origin=origin, is_package=kind == "pkg")
        spec.has_location = True
        if kind == "pkg":
            spec.submodule_search_locations = [origin.rpartition("/")[0]]
        return spec

    def create_module(self, spec: "ModuleSpec") -> None:
        """The default module object."""
        return None

    def exec_module(self, module: "ModuleType") -> None:
        """Run the module's archived bytecode in its namespace (a GENERATED module's with its builtin
        there first, as compiled())."""
        builtin = GENERATED.get(module.__name__)
        if builtin:
            module.__dict__[builtin] = self.compiled(builtin)
        exec(self.get_code(module.__name__), module.__dict__)

    def compiled(self, builtin: str) -> "Callable[..., object]":
        """`exec` or `eval` (`builtin`), except that a text the archive holds runs as the code compiled
        from it on the host; any other text or code is run as the builtin would."""
        run = exec if builtin == "exec" else eval
        texts = self.texts

        def run_text(
            source: "str | CodeType",
            globals: "dict[str, Any] | None" = None,
            locals: "Mapping[str, object] | None" = None,
        ) -> object:
            blob = texts.get((builtin, source)) if type(source) is str else None
            if blob is not None:
                import marshal

                source = marshal.loads(blob)
            return run(source, globals, locals)

        return run_text

    def get_code(self, name: str) -> "CodeType":
        """The module's code object, unmarshalled from the archive."""
        import marshal

        return marshal.loads(self.table[name][2])

    def is_package(self, name: str) -> bool:
        """Whether the archived module is a package."""
        return self.table[name][1] == "pkg"

    def get_source(self, name: str) -> "str | None":
        """The module's source, read from the host file it was compiled from (None if that is gone)."""
        try:
            with open(self.table[name][0], encoding="utf-8") as f:
                return f.read()
        except OSError:
            return None


def install(archive: str, table: dict, texts: dict) -> ArchiveFinder:
    """Put a finder for `table` before the path finder on sys.meta_path (built-in and frozen modules
    still come first); a GENERATED module imported before it gets its builtin from it now."""
    finder = ArchiveFinder(archive, table, texts)
    for name, builtin in GENERATED.items():
        if name in sys.modules:
            setattr(sys.modules[name], builtin, finder.compiled(builtin))
    names = [getattr(f, "__name__", "") for f in sys.meta_path]
    at = names.index("PathFinder") if "PathFinder" in names else len(sys.meta_path)
    sys.meta_path.insert(at, finder)
    return finder
