"""Scenarios: small programs that each ask one question of a kernel; the table is in registry.py, the memory
kinds in memkinds.py, the child's side of the supervisor channel in context.py.

May import uffd, osutil, verdicts, exitcodes; nothing above.
"""
