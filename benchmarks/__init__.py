"""Benchmarks of the vsc PKCS#11 module against SoftHSM2 and raw `cryptography` (see docs/benchmarks.md)."""
