# SPDX-License-Identifier: GPL-2.0-only
"""Validators for what uffdprobe writes: JSON against its shipped JSON Schemas, JUnit against
junit-10.xsd (tests/schemas/junit-10.xsd), KTAP through the kernel's own kunit.py parser."""

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import jsonschema
from lxml import etree
from referencing import Registry, Resource

from uffdprobe.results.report import SCHEMAS

JUNIT_XSD = Path(__file__).with_name("schemas") / "junit-10.xsd"


@lru_cache(maxsize=None)
def _validator(kind: str):
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def valid_json(source: Union[str, Path, dict], kind: str) -> dict:
    """The document, after asserting it is valid per uffdprobe/results/schemas/{kind}.schema.json."""
    data = source if isinstance(source, dict) else json.loads(Path(source).read_text())
    errors = sorted(_validator(kind).iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    return data


def valid_jsonl(path: Union[str, Path]) -> list:
    """The results of a verdicts.jsonl stream, after asserting each line is a result per the schema."""
    out = []
    for line in Path(path).read_text().splitlines():
        doc = {
            "format": "uffdprobe.results",
            "schema_version": 1,
            "uffdprobe_version": "-",
            "argv": [],
            "results": [json.loads(line)],
        }
        out += valid_json(doc, "results")["results"]
    return out


def valid_junit(path: Union[str, Path]) -> etree._Element:
    """The parsed JUnit XML, after asserting it validates against junit-10.xsd."""
    schema = etree.XMLSchema(etree.parse(str(JUNIT_XSD)))
    doc = etree.parse(str(path))
    assert schema.validate(doc), "\n".join(str(e) for e in schema.error_log)
    return doc.getroot()


def kunit_py() -> Optional[Path]:
    """tools/testing/kunit/kunit.py of Debian's linux-source-6.1 tree, unpacked into the kernel cache's
    sources/ once (no build: collecting the tests must never start one); None only without the tarball."""
    from uffdprobe.kbuild import cache, source

    if not Path(source.DEFAULT_TARBALL).is_file():
        return None
    root = cache.default_root()
    with cache.in_use(root):
        tree = source.materialize(source.parse_spec(), root, progress=False).tree
    return tree / "tools" / "testing" / "kunit" / "kunit.py"


def kunit_parse(ktap_text: str, tmp: Path) -> dict:
    """Run the kernel's parser on `ktap_text`: its JSON (test tree with logs) and its summary line."""
    tool = kunit_py()
    assert tool is not None
    src = tmp / "ktap.txt"
    src.write_text(ktap_text)
    out = tmp / "kunit.json"
    proc = subprocess.run(
        [sys.executable, str(tool), "parse", f"--json={out}", str(src)], capture_output=True, text=True, timeout=60
    )
    summary = [ln for ln in proc.stdout.splitlines() if "Testing complete." in ln]
    return {
        "proc": proc,
        "json": json.loads(out.read_text()) if out.exists() else None,
        "summary": summary[-1] if summary else "",
    }
