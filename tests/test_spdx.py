# SPDX-License-Identifier: GPL-2.0-only
"""Every source file of the project says its licence in an SPDX line near its top (after a shebang)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TAG = "SPDX-License-Identifier: GPL-2.0-only"
#: Not ours to mark: recorded output, and patches and recipes (their bytes are part of a kernel's cache key).
EXEMPT = ("tests/test_data/", "vm-images/", "tests/splat/")


def test_every_source_file_carries_the_spdx_line():
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout")
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    sources = [f for f in files if f.endswith((".py", ".pyi", ".sh", ".c", ".h")) and not f.startswith(EXEMPT)]
    assert len(sources) > 100
    missing = [
        f for f in sources if (ROOT / f).is_file() and TAG not in "".join((ROOT / f).read_text().splitlines(True)[:3])
    ]
    assert not missing, missing
