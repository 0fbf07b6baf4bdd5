"""Cryptographic building blocks (all primitives come from ``cryptography``)."""
