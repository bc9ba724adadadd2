# SPDX-License-Identifier: GPL-2.0-only
"""The supervisor: one loop (loop.py) runs every workload (protocol.py) bounded, watches it, and stops its
process group; its policies run a scenario in a child process (supervisor.py), any program (workload.py)
or a kernel selftest (kselftest.py), classify a hang from the blocked tasks' state, wchan and kernel stack
(tasks, procfs), rescue it, and turn what happened into Results.

May import scenarios, uffd, osutil, verdicts, exitcodes.
"""
