"""The reference identity server: a CA, one-time activation links, PIN checks and device requests over HTTPS."""
