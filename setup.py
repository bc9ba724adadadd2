"""cffi's build hook has no pyproject.toml key; everything else lives in pyproject.toml."""
from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
