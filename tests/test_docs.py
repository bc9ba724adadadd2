# SPDX-License-Identifier: GPL-2.0-only
"""The documents hold to the code and to each other: every relative link and anchor resolves, the README's
exit-status table is exitcodes.Exit, the design's layout drawing is test_layout's STAGES order, and the
user guide keeps the reliability table the suite rewrites."""

import argparse
import re
from pathlib import Path

import pytest
from conftest import DOCS_BEGIN, DOCS_END, RELIABILITY_DOC, reliability_table
from test_layout import STAGES

from uffdprobe.exitcodes import Exit

ROOT = Path(__file__).resolve().parent.parent
#: Every document a reader follows links through.
DOCUMENTS = [
    "README.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "vm-images/README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
]
_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> list:
    """The lines outside fenced code blocks, as (line number, line)."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set:
    """Every heading anchor of a Markdown file, GitHub's '-1', '-2' suffixes for repeats included."""
    seen: dict = {}
    for _, line in _prose(path.read_text()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        seen.setdefault(f"{base}-{n}" if n else base, 1)
    return set(seen)


def _links(path: Path) -> list:
    """(line number, target) of every link in the prose, inline code spans left out."""
    out = []
    for number, line in _prose(path.read_text()):
        for target in _LINK.findall(re.sub(r"`[^`]*`", "", line)):
            out.append((number, target))
    return out


def test_the_slugs_are_githubs():
    assert slug("Any program under the supervisor (`--exec`)") == "any-program-under-the-supervisor---exec"
    assert (
        slug("Shared memory, hugetlb, MOVE and PAGEMAP_SCAN (measured)")
        == "shared-memory-hugetlb-move-and-pagemap_scan-measured"
    )
    assert (
        slug("The kernel's own mm selftests, beside the scenarios")
        == "the-kernels-own-mm-selftests-beside-the-scenarios"
    )


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_relative_link_resolves(document):
    path = ROOT / document
    assert path.is_file(), document
    broken = []
    for number, target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, file: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{document}:{number}: {target} (no {dest})")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{document}:{number}: {target} (no heading #{anchor} in {dest.name})")
    assert not broken, "\n".join(broken)


def test_the_documents_link_to_each_other():
    """The README points at every file of docs/, and each of them back at the README."""
    readme_targets = {t.partition("#")[0] for _, t in _links(ROOT / "README.md")}
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme_targets, doc.name
        assert any(t.startswith("../README.md") for _, t in _links(doc)), doc.name


def test_the_readme_exit_status_table_is_exitcodes():
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Exit status\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| ([A-Z_, ]+) \| (.+) \|$", section, re.M)
    table = {int(status): set(names.split(", ")) for status, names, _ in rows}
    code: dict = {}
    for name, member in Exit.__members__.items():
        code.setdefault(int(member), set()).add(name)
    assert table == code
    assert [int(s) for s, _, _ in rows] == sorted(code), "one row per status, in order"


def test_the_layout_drawing_follows_the_stage_order():
    """The drawing lists the stages top to bottom in STAGES order, each once (its first column)."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("\n## Stages and their import rules\n", 1)[1]
    drawing = section.split("```\n", 1)[1].split("```", 1)[0]
    drawn = []
    for line in drawing.splitlines():
        if line.startswith("uffdprobe/"):
            first_column = re.split(r"\s{2,}", line, maxsplit=1)[0]
            drawn += [Path(part.strip()).name.removesuffix(".py") for part in first_column.split(",")]
    assert drawn == STAGES


def test_the_reliability_table_lives_where_the_suite_rewrites_it():
    text = (ROOT / RELIABILITY_DOC).read_text()
    assert text.count(DOCS_BEGIN) == 1 and text.count(DOCS_END) == 1
    table = text.split(DOCS_BEGIN, 1)[1].split(DOCS_END, 1)[0].strip().splitlines()
    header = reliability_table({}).splitlines()
    assert table[:2] == header and len(table) > 100, table[:3]
    assert all(line.startswith("| ") and line.endswith(" |") and line.count(" | `test_") == 1 for line in table[2:]), (
        "every row: case, handling, `test`, result"
    )


def _long_options(parser, path=()):
    """(subcommand path, option) for every long option of the command line, help and version left out."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _long_options(sub, (*path, name))
        elif action.help != argparse.SUPPRESS:
            yield from (
                (" ".join(path), o)
                for o in action.option_strings
                if o.startswith("--") and o not in ("--help", "--version")
            )


def test_every_option_is_documented():
    """Each long option of every subcommand is named in the README or the user guide."""
    from uffdprobe.cli.main import build_parser

    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "user-guide.md").read_text()
    options = list(_long_options(build_parser()))
    assert len(options) > 100
    missing = sorted(
        {f"{sub} {option}" for sub, option in options if not re.search(re.escape(option) + r"(?![\w-])", text)}
    )
    assert not missing, missing
