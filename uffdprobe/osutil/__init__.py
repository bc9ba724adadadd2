# SPDX-License-Identifier: GPL-2.0-only
"""Operating-system primitives every stage may use: child processes that are always stopped and reaped
(children), a bounded exclusive flock (filelock), and files written whole or not at all, content hashes
and full-disk checks (files), and where the shipped data lives: recipes, patches, C sources (datafiles).

Imports nothing else from uffdprobe but exitcodes.
"""
