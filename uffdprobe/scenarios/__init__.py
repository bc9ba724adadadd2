# SPDX-License-Identifier: GPL-2.0-only
"""Scenarios: small programs that each ask one question of a kernel; the table is in registry.py, the memory
kinds in memkinds.py, the child's side of the supervisor channel in context.py. Users' own rows join the
table through sources.py (files and the entry point group); api.py is the import path they write against.

May import uffd, osutil, verdicts, exitcodes; nothing above.
"""
