"""uffdprobe: drive userfaultfd from Python and reproduce kernel mm regressions on real kernels."""
