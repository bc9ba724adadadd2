# SPDX-License-Identifier: GPL-2.0-only
"""The guest's Python (run.guest_python): started with -S and the host's module path, it finds the same
files as the host's interpreter, and its `uffdprobe run` loads only what one scenario needs. Run here on
the host with the very command line the guest gets (the guest sees these files read-only)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uffdprobe.osutil import datafiles
from uffdprobe.run import guest_python

#: What the guest's run used to load and no longer needs for a scenario that does not hang: each costs
#: tenths of a second under TCG. (odirect, blockdev and tempfile still come: the registry imports every
#: scenario module, umap-evict's included.)
NOT_ON_THE_RUN_PATH = (
    "site",
    "psutil",
    "ctypes",
    "tomllib",
    "traceback",
    "platform",
    "uffdprobe.results.ktap",
    "uffdprobe.run.kernels",
    "uffdprobe.kbuild.recipes",
)


def _guest_python(*args, **kw):
    return subprocess.run(
        [*guest_python.interpreter(), *args], capture_output=True, text=True, timeout=120, cwd="/", **kw
    )


def test_the_guest_python_finds_the_same_files_as_the_host():
    code = (
        "import json, sys, uffdprobe, cffi, psutil, uffdprobe.uffd._native as n; "
        "print(json.dumps([sys.flags.no_site, uffdprobe.__file__, cffi.__file__, psutil.__file__, n.__file__]))"
    )
    proc = _guest_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    no_site, *files = json.loads(proc.stdout)
    import cffi
    import psutil
    import uffdprobe
    import uffdprobe.uffd._native as native

    assert no_site == 1
    assert files == [uffdprobe.__file__, cffi.__file__, psutil.__file__, native.__file__]
    assert guest_python.module_path()[0] == str(datafiles.PACKAGE_PARENT)


@pytest.mark.root
def test_the_guest_run_of_one_scenario_loads_only_what_it_needs(tmp_path):
    env = dict(os.environ, UFFDPROBE_RESULTS=str(tmp_path), UFFDPROBE_TIED="vm")  # as guest_init.sh sets it
    argv = guest_python.from_archive(str(guest_python.archive()))  # the guest's command line, `-c` and all
    argv[argv.index("-S") + 1 : argv.index("-S") + 1] = ["-X", "importtime"]
    proc = subprocess.run(
        [*argv, "run", "--memory", "anon-4k", "wp-gup-vmsplice"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    verdicts = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert [(v["scenario"], v["verdict"]) for v in verdicts] == [("wp-gup-vmsplice", "PASS")]
    loaded = {line.split("|")[2].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "uffdprobe.supervise.supervisor" in loaded
    assert not loaded & set(NOT_ON_THE_RUN_PATH), sorted(loaded & set(NOT_ON_THE_RUN_PATH))


def test_precompile_leaves_bytecode_the_guest_can_read():
    guest_python.precompile()
    package = datafiles.PACKAGE_PARENT / "uffdprobe"
    if not os.access(package, os.W_OK):
        pytest.skip(f"{package} is read-only: an installed package, compiled by pip")
    sources = [p for p in package.rglob("*.py") if "data" not in p.relative_to(package).parts]
    import importlib.util

    stale = [
        str(p)
        for p in sources
        if not os.path.exists(importlib.util.cache_from_source(str(p)))
        or os.path.getmtime(importlib.util.cache_from_source(str(p))) < os.path.getmtime(p)
    ]
    assert not stale, stale[:5]
    assert sys.implementation.cache_tag in importlib.util.cache_from_source(str(sources[0]))


def test_the_guest_command_imports_the_run_path_from_the_archive(tmp_path):
    archive = guest_python.archive()
    script = tmp_path / "where.py"
    script.write_text(
        "import json, sys, uffdprobe.cli.main, uffdprobe.scenarios, uffdprobe.uffd._native as n, json\n"
        "from uffdprobe.osutil import datafiles\n"
        "def where(m):\n"
        "    return [getattr(m.__spec__.loader, 'archive', None), m.__file__]\n"
        "print(json.dumps({'scenarios': where(uffdprobe.scenarios), 'json': where(json), 'native': where(n),\n"
        "    'argv': sys.argv[1:], 'vm_images': str(datafiles.vm_images())}))\n"
    )
    proc = subprocess.run(
        [*guest_python.from_archive(str(archive), script=True), str(script), "x"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    import uffdprobe.scenarios
    import uffdprobe.uffd._native as native

    assert got["scenarios"] == [str(archive), uffdprobe.scenarios.__file__], (
        "served from the archive, named as on the host"
    )
    assert got["json"] == [str(archive), json.__file__]
    assert got["native"] == [None, native.__file__], "an extension module: from its host file"
    assert got["argv"] == ["x"]
    assert got["vm_images"] == str(datafiles.vm_images()), "data files still come from the host's folders"


def test_the_guest_command_compiles_no_source_on_the_run_path(tmp_path):
    """The dataclasses' methods and namedtuples' __new__ that the run path's modules generate run as code
    the archive compiled on the host: the guest never starts Python's compiler, code TCG would first have
    to translate. Without the archive the same imports compile every one of those texts."""
    script = tmp_path / "compiles.py"
    script.write_text(
        "import sys\n"
        "texts = []\n"
        "sys.addaudithook(lambda event, args: event == 'compile' and texts.append(str(args[1])))\n"
        "import uffdprobe.cli.main, uffdprobe.run.host\n"
        "print(len(texts), sorted(set(texts)))\n"
    )

    def compiles(archive):
        proc = subprocess.run(
            [*guest_python.from_archive(archive, script=True), str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert compiles(str(guest_python.archive())) == "0 []"
    count, names = compiles(str(tmp_path / "missing")).split(" ", 1)
    assert int(count) > 20 and names == "['<string>']", "the dataclasses and namedtuples of the run path"


def test_the_guest_command_searches_the_host_folders_for_nothing_on_the_run_path(tmp_path):
    """Under TCG a search of the host folders is a 9p lookup per folder: the archive answers every import
    of the run path, a module that was not there when it was made (copy's Jython lookup, made while the
    recorder itself imports dataclasses) included."""
    script = tmp_path / "searches.py"
    script.write_text(
        "import sys\n"
        "asked = []\n"
        "host = next(f for f in sys.meta_path if getattr(f, '__name__', '') == 'PathFinder')\n"
        "class Asked:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        asked.append(name)\n"
        "        return host.find_spec(name, path, target)\n"
        "sys.meta_path[sys.meta_path.index(host)] = Asked\n"
        "import uffdprobe.cli.main, uffdprobe.run.host\n"
        "print(sorted(asked))\n"
    )
    proc = subprocess.run(
        [*guest_python.from_archive(str(guest_python.archive()), script=True), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_its_archive_the_guest_command_imports_from_the_host_folders(tmp_path):
    script = tmp_path / "where.py"
    script.write_text("import uffdprobe.scenarios as s; print(type(s.__spec__.loader).__name__, s.__file__)\n")
    proc = subprocess.run(
        [*guest_python.from_archive(str(tmp_path / "missing"), script=True), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    import uffdprobe.scenarios

    assert proc.stdout.split() == ["SourceFileLoader", uffdprobe.scenarios.__file__]


def test_a_missing_or_stale_archive_is_rebuilt_not_used(tmp_path, monkeypatch):
    import marshal

    from uffdprobe.run import guest_archive

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = guest_python.archive()
    assert built.is_relative_to(tmp_path) and guest_archive.fresh(built)
    start, table, texts, manifest = marshal.loads(built.read_bytes())
    assert table["uffdprobe.scenarios"][1] == "pkg" and table["uffdprobe.uffd._native"][1] == "ext"
    assert "tkinter" not in table and "uffdprobe.cli.matrix" not in table, "only what the run imports"

    built.unlink()
    assert guest_python.archive() == built and guest_archive.fresh(built), "missing: built again"

    # stale: one of its sources changed since (here: the archive remembers another size), and its bytecode
    # says so; it must be rebuilt from the sources, not served
    name, size, mtime = manifest[-1]
    stale_table = dict(table, json=(table["json"][0], "py", marshal.dumps(compile("STALE = 1", "x", "exec"))))
    built.write_bytes(marshal.dumps((start, stale_table, texts, manifest[:-1] + [(name, size + 1, mtime)])))
    assert not guest_archive.fresh(built)
    assert guest_python.archive() == built and guest_archive.fresh(built)
    _, table_again, _, _ = marshal.loads(built.read_bytes())
    assert table_again["json"] == table["json"]


def test_building_an_archive_removes_the_ones_no_run_used_for_a_day(tmp_path, monkeypatch):
    """Each source change of an editable checkout makes a new archive; the unused ones go when the next
    is built, and nothing else in the folder (a link, another file, one used within the day) does."""
    from uffdprobe.run import guest_archive

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "uffdprobe" / "guest-python"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.marshal"
    elsewhere.write_bytes(b"not ours")
    day_old = time.time() - guest_archive.UNUSED_S - 60
    unused, recent, link, other = (folder / n for n in ("run-0.marshal", "run-1.marshal", "run-2.marshal", "notes"))
    for f in (unused, recent, other):
        f.write_bytes(b"x")
    link.symlink_to(elsewhere)
    for f in (unused, other, elsewhere):
        os.utime(f, (day_old, day_old))
    built = guest_python.archive()
    assert built.parent == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted([built.name, "run-1.marshal", "run-2.marshal", "notes"])
    assert elsewhere.read_bytes() == b"not ours"
    os.utime(built, (day_old, day_old))
    assert guest_python.archive() == built and built.stat().st_mtime > day_old, "a run's use is its mtime"


@pytest.mark.vm
@pytest.mark.timeout(900)
def test_a_guest_run_imports_its_modules_from_the_archive(tmp_path):
    from uffdprobe.run import guest_archive
    from uffdprobe.run.guest import GUEST_ARCHIVE

    scenario = Path(__file__).resolve().parent / "user_scenarios" / "module_origins.py"
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", "--kernel", "stock", "--accel", "tcg"]
        + ["--scenarios-from", str(scenario), "--json", str(out), "module-origins"],
        capture_output=True,
        text=True,
        timeout=800,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = json.loads(out.read_text())["results"]
    modules = result["evidence"]["modules"]
    import uffdprobe.scenarios
    import uffdprobe.uffd._native as native

    assert modules["uffdprobe.scenarios"] == {
        "archive": GUEST_ARCHIVE,
        "loader": "ArchiveFinder",
        "file": uffdprobe.scenarios.__file__,
    }
    assert modules["uffdprobe.uffd._native"]["file"] == native.__file__
    assert modules["uffdprobe.uffd._native"]["loader"] == "ExtensionFileLoader"
    # extension modules (_native, _sha256) are loaded from the host path the archive names for them
    recorded = [n for n in guest_archive.ENTRY if n in modules and modules[n]["loader"] != "ExtensionFileLoader"]
    assert modules["_sha256"]["file"].endswith(".so") and "uffdprobe.uffd._native" not in recorded
    assert len(recorded) > 50
    elsewhere = {n: modules[n] for n in recorded if modules[n]["archive"] != GUEST_ARCHIVE}
    assert not elsewhere, "the run path's modules all come from the archive"
    user = modules[next(n for n, m in modules.items() if m["file"] == str(scenario))]
    assert user["archive"] is None, "a user's scenario file: from the host root"
