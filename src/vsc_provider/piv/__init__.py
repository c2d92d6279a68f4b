"""A PIV card edge (NIST SP 800-73-4) over the card service: APDUs answered for a PC/SC virtual reader."""
