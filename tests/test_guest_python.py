# SPDX-License-Identifier: GPL-2.0-only
"""The guest's Python (run.guest_python): started with -S and the host's module path, it finds the same
files as the host's interpreter, and its `uffdprobe run` loads only what one scenario needs. Run here on
the host with the very command line the guest gets (the guest sees these files read-only)."""

import json
import os
import subprocess
import sys

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
    proc = _guest_python(
        "-X", "importtime", "-m", "uffdprobe", "run", "--memory", "anon-4k", "wp-gup-vmsplice", env=env
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
