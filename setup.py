"""Builds the PKCS#11 library (native/build.py) and the minidriver card-edge library (native/md_build.py) as part
of installing the package."""

from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder", "native/md_build.py:ffibuilder"])
