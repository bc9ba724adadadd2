# SPDX-License-Identifier: GPL-2.0-only
"""The uffdprobe command line: main (the parser and the mapping of errors to exit statuses) and one module
per subcommand: run and list (run), matrix (matrix), boot (boot), kernel (kernel), bisect and bisect-step
(bisect), doctor (doctor). Only argument parsing and printing live here; the work is done by the stages below.

May import every stage; nothing imports cli but __main__.
"""
