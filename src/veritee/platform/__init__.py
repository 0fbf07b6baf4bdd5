"""Attesters: real and emulated TEE platforms."""
