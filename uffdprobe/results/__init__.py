# SPDX-License-Identifier: GPL-2.0-only
"""Verdicts once they exist: terminal table, KTAP and JSON lines (report), declared expectations (expect),
the kernel x scenario matrix and its marks (matrix), and its renderings: terminal (table), HTML (html),
JUnit (junit), with flat evidence views shared by them (evidence).

May import verdicts, exitcodes, osutil and the scenario table; never kernels, VMs or runs.
"""
