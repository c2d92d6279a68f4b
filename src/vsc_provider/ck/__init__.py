"""The PKCS#11 vocabulary shared by every layer: constants, the error type and the attribute codec."""
