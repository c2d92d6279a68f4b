"""Builds the PKCS#11 library (native/build.py) as part of installing the package."""

from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])
