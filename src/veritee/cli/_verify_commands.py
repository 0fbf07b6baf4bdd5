"""Registration of ``veritee show``, ``verify`` and ``appraise`` (the commands are in
``veritee.cli._verify``, imported when one runs: registering imports argparse only)."""

from __future__ import annotations

import argparse

from veritee.cli import AddCommand, _parse_time, lazy
from veritee.cli._options import path_arg

__all__ = ["register"]


# -- arguments --------------------------------------------------------------------------------
def _scheme_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("report", help="the evidence, binary or hex/base64 text: an SEV-SNP report, "
                   "an Azure HCL report, a configfs-tsm report, an Intel TDX/SGX quote (also "
                   "JSON with a 'quote' member), an AWS Nitro document, an Arm PSA/CCA token, "
                   "an NVIDIA SPDM report")
    p.add_argument("--scheme", metavar="NAME", help="the evidence's scheme (default: "
                   "recognised from the bytes); see the registry: sevsnp, tdx, sgx, ...")
    p.add_argument("--allow-nonzero-trailer", action="store_true",
                   help="accept non-zero bytes after an Intel quote's signature data (they "
                   "are not signed and are ignored)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="output format (default: text)")


def _collateral_args(p: argparse.ArgumentParser) -> None:
    _scheme_args(p)
    p.add_argument("--certs", metavar="PATH", action="append",
                   help="collateral, repeatable: files or directories (any names; each scheme "
                   "picks its own): AMD ARK/ASK/ASVK/VCEK/VLEK and CRLs; Intel TCB Info / QE "
                   "Identity / CRLs / chains or a dcap-qvl collateral.json; an NVIDIA device "
                   "chain")
    p.add_argument("--cert-table", metavar="FILE", help="an extended report's certificate "
                   "table (configfs-tsm auxblob)")
    p.add_argument("--crl", metavar="FILE", help="a CRL (DER or PEM) for the evidence's "
                   "chain, as if given with --certs")
    p.add_argument("--require-crl", action="store_true",
                   help="fail verification unless the chain was checked against its CRLs")
    p.add_argument("--at", type=_parse_time, metavar="TIME",
                   help="verify as of this ISO 8601 time (default: now)")
    p.add_argument("--trust-root", action="append", metavar="PEM", help="trust this root "
                   "(repeatable) instead of the vendor's pinned one, for the recognised "
                   "evidence's vendor (an emulated machine's ark.pem or root_ca.pem, Intel's "
                   "sample root)")
    p.add_argument("--nonce", metavar="HEX", help="the raw bytes the evidence must carry "
                   "(REPORT_DATA; zero-padded to its size): fail unless they match")
    p.add_argument("--key", metavar="FILE", help="the device key (IAK/CPAK) that signs an "
                   "Arm PSA or CCA token (PEM, DER or JWK)")
    p.add_argument("--fetch", action="store_true", help="fetch what the collateral lacks "
                   "(SEV-SNP: VCEK, chain, CRL from AMD's KDS); fetched certificates are "
                   "verified as any")
    p.add_argument("--product", choices=("Milan", "Genoa", "Turin"), help="with --fetch: the "
                   "product of an SEV-SNP report without CPUID fields (version 2)")
    p.add_argument("--kds-url", default=None, metavar="URL", help="KDS base URL (a mirror)")
    p.add_argument("--kds-cache", type=path_arg, metavar="DIR", help="cache directory for KDS "
                   "responses (default ~/.cache/veritee/kds)")


def register(add: AddCommand) -> None:
    """Add ``show``, ``verify`` and ``appraise``."""
    _scheme_args(add("show", "decode every field of evidence for a human (any scheme)",
                     lazy("veritee.cli._verify:_cmd_show")))
    _collateral_args(add("verify", "verify evidence's signature, certificate chain and "
                         "revocation (any scheme)", lazy("veritee.cli._verify:_cmd_verify")))
    p = add("appraise", "verify evidence and appraise it against a policy (any scheme)",
            lazy("veritee.cli._verify:_cmd_appraise"))
    _collateral_args(p)
    p.add_argument("--policy", metavar="FILE", help="the recognised scheme's policy (TOML or "
                   "JSON); default: its secure default policy")

