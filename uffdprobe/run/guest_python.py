# SPDX-License-Identifier: GPL-2.0-only
"""How the guest starts Python: the host's interpreter, told its module path up front.

Under TCG every module a guest process imports costs tens of milliseconds, and compiling one from source
costs more. So the guest's Python skips `site` (-S: no .pth files, no editable-install finder, which
alone imports pathlib, urllib and re), gets the very module path a fresh interpreter on the host has
(PYTHONPATH), and finds uffdprobe compiled: precompile() writes its __pycache__ on the host before the
boot (the guest sees the same files read-only and can write none).
"""

import compileall
import functools
import json
import os
import subprocess
import sys
from typing import List

from uffdprobe.osutil import datafiles

PATH_PROBE_TIMEOUT = 30.0


@functools.lru_cache(maxsize=None)
def module_path() -> List[str]:
    """The folders the guest's Python imports from: the one holding the uffdprobe package, then what
    sys.path is for a fresh interpreter here (with site: venv, .pth and user folders; not our own
    sys.path, which pytest and scripts change), minus the script folder."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
            capture_output=True,
            text=True,
            timeout=PATH_PROBE_TIMEOUT,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        fresh = json.loads(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):  # then ours, which holds at least as much
        fresh = sys.path
    found = [str(datafiles.PACKAGE_PARENT)] + [p for p in fresh if os.path.isabs(p)]
    return list(dict.fromkeys(found))


def interpreter() -> List[str]:
    """The argv prefix that starts the host's Python in the guest: `env PYTHONPATH=... python -S`."""
    return ["/usr/bin/env", f"PYTHONPATH={os.pathsep.join(module_path())}", sys.executable, "-S"]


def precompile() -> None:
    """Bring the package's bytecode up to date where the package folder is writable (a checkout, an
    editable install); elsewhere (a wheel install compiled by pip, a read-only folder) do nothing."""
    package = datafiles.PACKAGE_PARENT / "uffdprobe"
    if os.access(package, os.W_OK):
        compileall.compile_dir(str(package), quiet=2, workers=1)
