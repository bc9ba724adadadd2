# SPDX-License-Identifier: GPL-2.0-only
"""One version source: what `uffdprobe --version` says is what every output records (JSON, KTAP, HTML)."""

import json
import subprocess
import sys

import uffdprobe


def test_json_and_ktap_record_the_version_that_version_prints(tmp_path):
    said = subprocess.run([sys.executable, "-m", "uffdprobe", "--version"], capture_output=True, text=True, timeout=60)
    assert said.returncode == 0 and said.stdout.strip() == f"uffdprobe {uffdprobe.version()}"
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "run",
            "cow-leak",
            "--memory",
            "anon-4k",
            "--ktap",
            "-",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    version = said.stdout.strip().removeprefix("uffdprobe ")
    assert json.loads(out.read_text())["uffdprobe_version"] == version
    assert proc.stdout.splitlines()[2].startswith(f"# uffdprobe {version}: ")
