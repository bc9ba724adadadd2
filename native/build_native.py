# SPDX-License-Identifier: GPL-2.0-only
"""cffi API-mode builder for uffdprobe.uffd._native: the cdef is native/uffdprobe_native.h itself."""
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
HEADER = HERE / "uffdprobe_native.h"


def _cdef_text() -> str:
    """The header minus preprocessor lines and comments, which cffi's parser does not take."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "uffdprobe.uffd._native",
    '#include "uffdprobe_native.h"',
    sources=["native/uffdprobe_native.c"],
    include_dirs=["native"],
    depends=["native/uffdprobe_native.h", "native/uffd_uapi_fallback.h"],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
