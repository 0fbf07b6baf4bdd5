"""Registration of ``veritee cert ...`` (the commands are in ``veritee.cli._cert``, imported
when one runs: registering imports argparse only)."""

from __future__ import annotations

import argparse

from veritee.cli import (
    KEY_TYPES,
    AddCommand,
    CommandFn,
    _parse_time,
    add_format_arg,
    key_type_arg,
    lazy,
)
from veritee.cli._options import add_store_args

__all__ = ["USAGES", "register"]

USAGES = ("client", "server")  # extended key usages: serverAuth, clientAuth


def _impl(name: str) -> CommandFn:
    """``name`` in ``veritee.cli._cert``, imported when the command runs."""
    return lazy(f"veritee.cli._cert:{name}")


def register(add: AddCommand) -> None:
    """Add the ``cert`` command and its actions."""
    cert = add("cert", "issue X.509 certificates and inspect attested (RA-TLS) ones",
               _impl("_cmd_cert_help"))
    from veritee.cli import _Parser

    parser_class = _Parser
    actions = cert.add_subparsers(dest="cert_action", metavar="ACTION",
                                  parser_class=parser_class)
    actions.required = True

    issue = actions.add_parser("issue", help="issue a CA, a CSR or a leaf certificate")
    kinds = issue.add_subparsers(dest="cert_kind", metavar="KIND", parser_class=parser_class)
    kinds.required = True

    p = kinds.add_parser("ca", help="a self-signed CA (ca.pem, ca.key)")
    _key_args(p)
    p.add_argument("--subject", required=True, help='RFC 4514 name, e.g. "CN=Example CA"')
    p.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    p.add_argument("--path-length", type=int, default=0, help="basicConstraints pathLen: how "
                   "many CAs may sit below this one (default 0)")
    _store_key_args(p)
    p.set_defaults(fn=_impl("_cmd_issue_ca"))

    p = kinds.add_parser("csr", help="a key and a PKCS#10 request (key.pem, csr.pem)")
    _key_args(p)
    p.add_argument("--subject", required=True, help='RFC 4514 name, e.g. "CN=svc"')
    _san_args(p)
    _store_key_args(p)
    p.set_defaults(fn=_impl("_cmd_issue_csr"))

    p = kinds.add_parser("leaf", help="a leaf signed by a CA, from a CSR or a new key")
    _key_args(p)
    p.add_argument("--ca-cert", required=True, metavar="PEM", help="the CA's certificate")
    p.add_argument("--ca-key", required=True, metavar="PEM", help="the CA's key: a PEM file "
                   "or store:NAME (a key in the key store)")
    p.add_argument("--csr", metavar="FILE", help="issue for this CSR (else a new key is made)")
    p.add_argument("--subject", help="subject (required without --csr; overrides the CSR's)")
    _san_args(p)
    p.add_argument("--usage", action="append", choices=sorted(USAGES),
                   help="extended key usage (repeatable; default: server and client)")
    p.add_argument("--days", type=int, default=90, help="validity in days (default 90)")
    _store_key_args(p)
    p.set_defaults(fn=_impl("_cmd_issue_leaf"))

    p = actions.add_parser("check", help="check a leaf against its CA (signature, validity, "
                           "basicConstraints, EKU)")
    p.add_argument("cert", metavar="CERT", help="the leaf certificate (PEM or DER)")
    p.add_argument("--ca", required=True, metavar="PEM", help="the CA that issued it")
    p.add_argument("--usage", choices=sorted(USAGES), default="server",
                   help="the extended key usage it must allow (default server)")
    p.add_argument("--at", type=_parse_time, metavar="TIME", help="check as of (default: now)")
    p.set_defaults(fn=_impl("_cmd_check"))

    p = actions.add_parser("inspect", help="show an attested certificate and appraise the "
                           "evidence it carries")
    p.add_argument("cert", metavar="FILE", help="PEM or DER certificate")
    p.add_argument("--trust-root", action="append", metavar="PEM", help="trust this root "
                   "instead of the vendor's pinned ones (e.g. an emulated machine's ark.pem "
                   "or root_ca.pem)")
    p.add_argument("--policy", metavar="FILE", help="policy file (TOML or JSON) of the "
                   "evidence's scheme")
    p.add_argument("--certs", metavar="PATH", action="append", help="collateral: a "
                   "directory or file, repeatable (AMD certificates, else the ones in the "
                   "certificate's endorsements extension; Intel TCB Info, QE Identity, CRLs)")
    p.add_argument("--crl", metavar="FILE", help="AMD CRL for the product (DER or PEM)")
    p.add_argument("--ca", metavar="PEM", help="check the certificate's issuer signature")
    p.add_argument("--at", type=_parse_time, metavar="TIME", help="as of (default: now)")
    add_format_arg(p, what="the certificate and the appraisal")
    p.set_defaults(fn=_impl("_cmd_inspect"))

    p = actions.add_parser("attested", help="launch an emulated TEE (SEV-SNP guest, TDX TD "
                           "or SGX enclave) that makes a key and an attested certificate "
                           "(INSECURE: emulated)")
    p.add_argument("--out", required=True, metavar="DIR", help="the directory to write "
                   "cert.pem, key.pem, certs/ and policy.json to")
    _key_args(p)
    p.add_argument("--subject", default="CN=veritee attested workload",
                   help='RFC 4514 name (default "CN=veritee attested workload")')
    _san_args(p)
    p.add_argument("--hours", type=int, default=24, help="certificate lifetime")
    p.add_argument("--product", choices=("Milan", "Genoa", "Turin"), default="Milan",
                   help="the emulated AMD processor (default Milan)")
    p.add_argument("--key-size", type=int, default=4096, choices=(2048, 3072, 4096),
                   help="RSA size of the emulated AMD roots")
    p.add_argument("--debug-guest", action="store_true", help="launch with the DEBUG bit")
    p.add_argument("--tee", choices=("snp", "tdx", "sgx", "tpm"), default="snp",
                   help="the TEE whose evidence goes in the certificate: snp (a report and "
                   "its certificate table), tdx or sgx (a DCAP quote with its PCK chain); "
                   "tpm is refused here (its quote verifies against an enrolled AK)")
    p.set_defaults(fn=_impl("_cmd_attested"))


def _key_args(p: argparse.ArgumentParser) -> None:
    # One spelling with ``keys create --type``; the old p256/rsa3072 are accepted with a note.
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec-p256", type=key_type_arg,
                   help="the new key's type (default ec-p256)")
    if not any(a.dest == "out" for a in p._actions):
        p.add_argument("--out", required=True, metavar="DIR", help="the directory to write to")


def _store_key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", metavar="store:NAME", help="use this key of the sealed key store "
                   "(a sign key) instead of generating one; no private key is written")
    add_store_args(p)


def _san_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dns", action="append", default=[], metavar="NAME",
                   help="a DNS name for subjectAltName (repeatable)")
    p.add_argument("--ip", action="append", default=[], metavar="ADDRESS",
                   help="an IP address for subjectAltName (repeatable)")
