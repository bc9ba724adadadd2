"""Scenarios: small programs that each ask one question of a kernel; the table is in registry.py."""
