# SPDX-License-Identifier: GPL-2.0-only
"""One real matrix (host and the `stock` recipe booted once) shared by the matrix and HTML tests."""

import json
import subprocess
import sys

#: Two runs of four scenarios: selftest-self-deadlock varies by run (FLAKY), umap-evict's test-only
#: circular wait hangs for real (HANG, a REGRESSION against stock's declared PASS), and a declared
#: HANG on the host's wp-gup-odirect comes out PASS (FIXED).
ARGS = [
    "--kernel",
    "host",
    "--kernel",
    "stock",
    "--runs",
    "2",
    "--scenario",
    "wp-gup-odirect",
    "--scenario",
    "cow-leak",
    "--scenario",
    "selftest-self-deadlock",
    "--scenario",
    "umap-evict",
    "--param",
    "selftest_helper_write_runs=[2]",
    "--param",
    "selftest_cpu_write_evict=true",
    "--expect",
    "host:wp-gup-odirect=HANG",
    "--memory",
    "anon-4k",
    "--memory",
    "anon-thp",
]  # the marks below are about these kinds
_done = {}


def booted_matrix(tmp_path_factory) -> dict:
    """Run it once per pytest process; later callers get the same outputs (paths, exit status, streams)."""
    if not _done:
        out = tmp_path_factory.mktemp("matrix")
        files = {"json": out / "matrix.json", "junit": out / "matrix.xml", "html": out / "matrix.html"}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "uffdprobe",
                "matrix",
                *ARGS,
                "--results-dir",
                str(out / "work"),
                "--json",
                str(files["json"]),
                "--junit",
                str(files["junit"]),
                "--html",
                str(files["html"]),
            ],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        _done.update(
            files, dir=out, proc=proc, data=json.loads(files["json"].read_text()) if files["json"].exists() else None
        )
    return _done


def cell(data: dict, kernel: str, scenario: str, memory: str = "anon-4k") -> dict:
    return next(c for c in data["cells"] if (c["kernel"], c["scenario"], c["memory"]) == (kernel, scenario, memory))
