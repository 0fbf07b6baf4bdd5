"""Load the Intel (TDX/SGX) samples of ../shared/evidence for tests (never copied here).

``load_sample(sample)`` returns the quote, the collateral built from the sample's files, the
evaluation time and, for non-production samples, the sample's own root certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from veritee.collateral.intel import load_files, read_quote
from veritee.formats.intel import Quote
from veritee.trust.intel import IntelCollateral, load_certificates

from _evidence import EVIDENCE_DIR, sample_time

INTEL_PREFIXES = ("tdx/", "sgx/", "gcp/", "azure-tdx/")
ROOTS = EVIDENCE_DIR / "roots"
# The samples whose TCB Info issuer chain is not shipped verify with the 2025 TCB Signing cert
# (manifest: roots/intel_tcb_signing_2025.der).
TCB_SIGNING_2025 = ROOTS / "intel_tcb_signing_2025.der"


@dataclass(frozen=True)
class IntelSample:
    """One manifest sample, loaded."""

    id: str
    dir: Path
    quote_bytes: bytes
    quote: Quote
    collateral: IntelCollateral
    now: datetime
    sample_root: x509.Certificate | None
    meta: dict[str, Any]


def quote_file(sample: dict[str, Any]) -> str | None:
    """The file holding the quote (``None`` for report-only samples)."""
    files = sample["files"]
    name = files.get("quote") or files.get("td_quote")
    return str(name) if name else None


def load_sample(sample: dict[str, Any]) -> IntelSample:
    """Read the quote and assemble the collateral the manifest describes for ``sample``."""
    d = EVIDENCE_DIR / sample["dir"]
    f = sample["files"]
    name = quote_file(sample)
    assert name is not None
    data = read_quote(d / name)
    # go-tdx-guest's test quote carries 39 non-zero bytes after the signature data.
    quote = Quote.from_bytes(data, allow_nonzero_trailer=True)
    kw: dict[str, Any] = {}
    if "collateral" in f or "collateral_same_fmspc" in f:
        kw["collateral_json"] = d / (f.get("collateral") or f["collateral_same_fmspc"])
    if "tcb_info_minified" in f:  # the pretty-printed one no longer matches its signature
        kw["tcb_info"] = d / f["tcb_info_minified"]
    elif "tcb_info" in f:
        kw["tcb_info"] = d / f["tcb_info"]
    if "qe_identity" in f:
        kw["qe_identity"] = d / f["qe_identity"]
    chain = f.get("tcb_info_issuer_chain") or f.get("tcb_signing_chain") or f.get("tcb_sign_chain")
    if chain:
        kw["tcb_info_issuer_chain"] = d / chain
    elif "tcb_info" in f:
        kw["tcb_info_issuer_chain"] = TCB_SIGNING_2025
    if f.get("qe_identity_issuer_chain"):
        kw["qe_identity_issuer_chain"] = d / f["qe_identity_issuer_chain"]
    if "pck_crl" in f:
        kw["pck_crl"] = d / f["pck_crl"]
    if "root_crl" in f:
        kw["root_ca_crl"] = d / f["root_crl"]
    if "pck_cert" in f:
        kw["pck_chain"] = [d / f["pck_cert"], d / f["pck_sign_chain"]]
    root = load_certificates((d / f["sample_root"]).read_bytes())[0] if "sample_root" in f else None
    return IntelSample(sample["id"], d, data, quote, load_files(**kw), sample_time(sample), root,
                       sample)
