"""`python -m uffdprobe` is the same as the `uffdprobe` command."""
import sys

from uffdprobe.cli.main import main

sys.exit(main())
