# SPDX-License-Identifier: GPL-2.0-only
"""Bisection over a kernel git tree: the git side (git), incremental builds in one make O= directory
(build), one step booted and judged 0/1/125 (step), the driver around `git bisect run` (driver), the log
(log), and a scripted 6.1 history for the tests (history).

May import run, vm, kbuild, results and everything below them; never cli.
"""
