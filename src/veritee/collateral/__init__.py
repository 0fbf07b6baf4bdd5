"""Collateral: vendor certificates and CRLs from files and certificate tables (only I/O here)."""
