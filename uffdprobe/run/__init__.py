# SPDX-License-Identifier: GPL-2.0-only
"""Runs: a plan of scenarios on the running kernel under the supervisor (host), the same plan in a kernel
booted in QEMU with its verdicts brought back (guest), and a whole matrix of kernels, one run each (matrix),
each kernel named, identified by content and given its declarations first (kernels); what this machine
can and cannot run, with fixes (doctor).

May import vm, kbuild, results, supervise, scenarios, uffd, osutil; never bisect or cli.

Glossary: "a kernel" along the way, from the --kernel argument to the reports (what it is; where it lives).

- KernelSpec: one --kernel argument parsed: label, kind (host, recipe, recipe-file, image, deb,
  tuxmake), the path or recipe it names; run/kernel_arg.py.
- Target: one kernel a run or matrix owes: label, what to boot (None: the running kernel), identity,
  declarations (`expect`), build error; made from a KernelSpec by run/kernels.py.
- Recipe: a NAME.toml: source, base config, fragments, patches, `[expect]` declarations;
  kbuild/recipes.py.
- BuiltKernel: a recipe built and in the cache: bzImage, .config, identity, cache key; kbuild/build.py
  (Entry, kbuild/cache.py, is such a kernel as listed from the cache's folder).
- UnpackedKernel, TuxmakeBuild: a linux-image .deb unpacked into the cache (vm/distro.py), the files of a
  tuxmake output folder (vm/tuxmake.py); both become a BootKernel.
- BootKernel: a kernel ready to boot: its KernelIdentity, initramfs, how the host root reaches it (9p or
  virtiofs); vm/resolve.py.
- KernelIdentity: which image booted: path, sha256, version string, release; vm/kernel.py.
- KernelTask: what a Dask worker needs to run one Target (its image comes apart, by hash); run/dask_cell.py.
- KernelRun: everything one kernel produced: label, identity, boot facts, declarations, every Result,
  whether complete; results/matrix.py, the column of a Matrix.
- KernelTest: one kernel's KTAP subtree as its verdicts land; results/ktap.py.
- Kernel (pytest plugin): one KernelRun booted once per session, its cells for the tests;
  uffdprobe/pytest_plugin.py.
- KernelFeatures: what the running kernel offers userfaultfd (probed), with `kernel`, the uname facts
  (release, version, machine) every Result carries as `Result.kernel`; uffd/features.py.
- KernelLog: /dev/kmsg read forward around each workload, for splats; osutil/kmsg.py.
- identity (a dict): the build identity a Target, KernelRun and the JSON reports carry (source, version,
  config hash, patches, sha256, release); made by kbuild for recipes and by run/kernels.py for files.
"""
