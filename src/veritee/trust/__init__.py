"""L2: cryptographic verification. ``verify_*`` raises on failure and returns ``Verified*``."""
