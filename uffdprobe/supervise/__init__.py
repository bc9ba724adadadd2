# SPDX-License-Identifier: GPL-2.0-only
"""The supervisor: runs each scenario in a child process, watches it, classifies a hang from the blocked
task's state, wchan and kernel stack (tasks), rescues it, reaps everything, and turns what happened into
exactly one Result.

May import scenarios, uffd, osutil, verdicts, exitcodes.
"""
