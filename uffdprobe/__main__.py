"""`python -m uffdprobe` is the same as the `uffdprobe` command."""
import sys

from .cli import main

sys.exit(main())
