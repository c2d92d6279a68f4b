"""The token engine: cards, their objects, PINs and the encrypted store, independent of any C ABI."""
