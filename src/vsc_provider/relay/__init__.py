"""The push relay: a stateless fan-out of opaque, encrypted notifications from the identity server to devices.

It imports nothing else of the package, so it can run (and be reviewed) on its own: it sees topics and JWEs,
never a request, a key or a device id.
"""
