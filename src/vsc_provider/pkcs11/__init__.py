"""PKCS#11 semantics in plain Python, one module per function group; the C glue calls these functions.

Nothing here sees a cffi pointer: arguments arrive as ints, bytes and decoded mechanisms, and errors
leave as vsc_provider.ck.errors.CKRError.
"""
