"""Authentication and signing requests pushed by the identity server: the device's side (fetch, verify,
approve with the card's key, the agent, the approval page, the implementer policy hook)."""
