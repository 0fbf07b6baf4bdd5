"""veritee: confidential computing on real and emulated TEEs."""

__version__ = "0.1.0"
