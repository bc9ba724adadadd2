# SPDX-License-Identifier: GPL-2.0-only
"""The kernel builder: recipes (recipes) name a source (source), config fragments (config) and a patch
series (patches); make runs bounded and logged (make); built kernels are cached by content (cache); build
ties them together, clean removes them (`kernel clean`); every failure is an error with its exit
status (errors).

May import results, scenarios, osutil, verdicts, exitcodes; never vm, run or anything above.
"""
