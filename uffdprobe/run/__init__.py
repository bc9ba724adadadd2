# SPDX-License-Identifier: GPL-2.0-only
"""Runs: a plan of scenarios on the running kernel under the supervisor (host), the same plan in a kernel
booted in QEMU with its verdicts brought back (guest), and a whole matrix of kernels, one run each (matrix),
each kernel named, identified by content and given its declarations first (kernels); what this machine
can and cannot run, with fixes (doctor).

May import vm, kbuild, results, supervise, scenarios, uffd, osutil; never bisect or cli.
"""
