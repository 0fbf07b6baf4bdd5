"""veritee: confidential computing on real and emulated TEEs.

Entry points:

* :func:`veritee.attest.verify_evidence` - parse, verify and appraise evidence (the front door)
* :mod:`veritee.formats` - byte formats (SEV-SNP reports, Azure HCL reports) as typed objects
* :mod:`veritee.policy.sevsnp` - appraisal policies with secure defaults
* :class:`veritee.platform.emulated.snp.InsecureEmulatedSnpMachine` - the emulated TEE
* :mod:`veritee.errors` - the exception tree; ``veritee`` on the command line
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up

__version__ = "0.1.0"
__all__ = ["VeriteeError", "__version__", "verify_evidence"]

if TYPE_CHECKING:
    from typing import Any

    from veritee.attest import verify_evidence
    from veritee.errors import VeriteeError


def __getattr__(name: str) -> Any:
    # Lazy, so `import veritee.errors` does not pull in the whole verifier.
    if name == "verify_evidence":
        from veritee.attest import verify_evidence

        return verify_evidence
    if name == "VeriteeError":
        from veritee.errors import VeriteeError

        return VeriteeError
    raise AttributeError(f"module 'veritee' has no attribute {name!r}")
