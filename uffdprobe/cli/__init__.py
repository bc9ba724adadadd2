# SPDX-License-Identifier: GPL-2.0-only
"""The uffdprobe command line: main (the parser, features and bench, and the one mapping of errors to exit
statuses in errors) and one module per subcommand: run and list (run), matrix (matrix), check (check),
boot (boot), kernel (kernel), bisect and bisect-step (bisect), doctor (doctor), payload (payload); the
options several share in execopts, user_scenarios and vocab. Only argument parsing and printing live here;
the work is done by the stages below.

May import every stage; nothing imports cli but __main__.
"""
