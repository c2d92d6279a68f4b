"""vsc-provider: a virtual smart card for desktops and servers, with a PKCS#11 module over a Python token engine."""

__version__ = "0.1.0"
