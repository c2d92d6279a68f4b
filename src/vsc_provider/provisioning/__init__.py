"""Client of the identity server: activation, renewal, key import, deletion, migration, server-checked PINs."""
