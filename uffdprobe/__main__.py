# SPDX-License-Identifier: GPL-2.0-only
"""`python -m uffdprobe` is the same as the `uffdprobe` command."""

import sys

from uffdprobe.cli.main import console

sys.exit(console())
