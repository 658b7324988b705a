"""Only the C extension lives here (setuptools has no pyproject key for cffi_modules); everything else is in
pyproject.toml. The extension is optional: with no C compiler the install still succeeds and the kernels are
built on first use (cpu_kernels/_loader.py), or report why they cannot be."""

from setuptools import setup

setup(cffi_modules=["cpu_kernels/_build.py:make_ffibuilder"])
