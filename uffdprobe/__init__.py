"""uffdprobe: drive userfaultfd from Python and reproduce kernel mm regressions on real kernels.

The subpackages are the stages of the data flow, each importing only the ones before it in this list:
osutil (processes, locks, whole files) -> uffd (the bindings) -> scenarios -> supervise -> results
(verdict files, matrix, reports) -> kbuild (recipe to bzImage) -> vm (boot in QEMU) -> run (host, guest,
matrix) -> bisect -> cli. exitcodes and verdicts (the verdict model) are shared by all;
pytest_plugin and __main__ sit on top.
"""
