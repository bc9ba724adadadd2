# SPDX-License-Identifier: GPL-2.0-only
"""The userfaultfd bindings: the compiled cffi module (_native, built from native/) and a thin typed layer
over it: the userfaultfd object and its ioctls (userfaultfd), header flags (flags), decoded messages
(messages), memory calls (memory), /proc/PID/pagemap (pagemap), fork with a uffd (forking), errors with
errno and the failing call (errors), what the running kernel offers (features), where O_DIRECT can go
(odirect), and the fault-service benchmark (bench).

May import osutil, exitcodes and verdicts; nothing above.
"""
