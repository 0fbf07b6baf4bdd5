"""``veritee cert``: issue certificates and inspect attested ones.

::

    veritee cert issue ca   --subject "CN=Example CA" --out DIR        -> ca.pem, ca.key
    veritee cert issue csr  --subject "CN=svc" --dns svc.local --out DIR -> key.pem, csr.pem
    veritee cert issue leaf --ca-cert ca.pem --ca-key ca.key (--csr csr.pem | --subject S)
                            --out DIR                                  -> cert.pem (+ key.pem)
    veritee cert check cert.pem --ca ca.pem [--usage server] [--at TIME]
    veritee cert inspect cert.pem [--trust-root ark.pem] [--policy FILE]
    veritee cert attested --out DIR [--tee snp|tdx|sgx]   (an emulated TEE makes a key and
                                                            an attested certificate)

Private keys are written unencrypted with mode 0600; keep them inside the TEE or seal them.
``--key store:NAME`` (ca, csr, leaf) uses a key of the sealed key store instead of making one,
and ``--ca-key store:NAME`` signs leaves with one: nothing private is written then (the
``--store`` and platform options say which store, as for ``veritee keys``).
"""

from __future__ import annotations

import argparse

from veritee.cli import (
    EXIT_OK,
    EXIT_POLICY_REJECTED,
    _emit,
    _read,
)
from veritee.cli._cert_commands import USAGES as _USAGES
from veritee.errors import ConfigError, PolicyRejected, VerificationError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from datetime import datetime, timedelta
    from typing import Any

    from cryptography import x509

__all__: list[str] = []



def _usage(name: str) -> Any:
    from veritee.crypto.certs import Usage

    return {"server": Usage.SERVER, "client": Usage.CLIENT}[name]


def _key_type(name: str) -> Any:
    """The ``veritee.crypto.certs`` key type of a CLI spelling (``ec-p256``, ...)."""
    from veritee.crypto.certs import KeyType

    return {"ec-p256": KeyType.P256, "ec-p384": KeyType.P384, "ed25519": KeyType.ED25519,
            "rsa-3072": KeyType.RSA3072, "rsa-4096": KeyType.RSA4096}[name]


def _new_key(args: argparse.Namespace) -> Any:
    from veritee.crypto.certs import generate_private_key

    return generate_private_key(_key_type(args.key_type))


def _cmd_cert_help(args: argparse.Namespace) -> int:  # pragma: no cover - ACTION is required
    raise ConfigError("cert: an action is required (issue, check, inspect, attested)")


def _store_name(ref: str | None, flag: str) -> str | None:
    if ref is None:
        return None
    if not ref.startswith("store:") or len(ref) == len("store:"):
        raise ConfigError(f"{flag}: got {ref!r}, want store:NAME (a key in the key store)")
    return ref.removeprefix("store:")


def _store_private(args: argparse.Namespace, name: str) -> Any:
    from veritee.cli._keys import store_from_args

    return store_from_args(args).signing_key(name)


def _days(n: int) -> timedelta:
    from datetime import timedelta

    if n < 1:
        raise ConfigError(f"--days: got {n}, want >= 1")
    return timedelta(days=n)


def _write_key(path: Any, data: bytes) -> None:
    from veritee._fs import atomic_write

    atomic_write(path, data, 0o600)


def _cmd_issue_ca(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from veritee._fs import atomic_write
    from veritee.crypto.certs import certificate_pem, create_ca, fingerprint, private_key_pem

    out = Path(args.out)
    stored = _store_name(args.key, "--key")
    key = _store_private(args, stored) if stored else _new_key(args)
    ca = create_ca(key, args.subject, now=datetime.now(UTC), valid_for=_days(args.days),
                   path_length=args.path_length)
    atomic_write(out / "ca.pem", certificate_pem(ca.certificate), 0o644)
    if stored:
        print(f"wrote {out / 'ca.pem'} (its key stays in the key store: {stored})")
    else:
        _write_key(out / "ca.key", private_key_pem(key))
        print(f"wrote {out / 'ca.pem'} and {out / 'ca.key'} (mode 0600)")
    print(f"sha256 fingerprint: {fingerprint(ca.certificate)}")
    return EXIT_OK


def _cmd_issue_csr(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cryptography.hazmat.primitives.serialization import Encoding

    from veritee._fs import atomic_write
    from veritee.crypto.certs import build_csr, private_key_pem

    out = Path(args.out)
    stored = _store_name(args.key, "--key")
    key = _store_private(args, stored) if stored else _new_key(args)
    csr = build_csr(key, args.subject, dns_names=args.dns, ip_addresses=args.ip)
    atomic_write(out / "csr.pem", csr.public_bytes(Encoding.PEM), 0o644)
    if stored:
        print(f"wrote {out / 'csr.pem'} (its key stays in the key store: {stored})")
    else:
        _write_key(out / "key.pem", private_key_pem(key))
        print(f"wrote {out / 'csr.pem'} and {out / 'key.pem'} (mode 0600)")
    return EXIT_OK


def _cmd_issue_leaf(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from veritee._fs import atomic_write
    from veritee.crypto.certs import (
        CertificateAuthority,
        certificate_pem,
        issue_leaf,
        load_certificate,
        load_csr,
        load_private_key,
        private_key_pem,
    )

    out = Path(args.out)
    ca_stored = _store_name(args.ca_key, "--ca-key") if args.ca_key.startswith("store:") \
        else None
    ca = CertificateAuthority(
        certificate=load_certificate(_read(args.ca_cert, "CA certificate"), source=args.ca_cert),
        key=(_store_private(args, ca_stored) if ca_stored else
             load_private_key(_read(args.ca_key, "CA key"), source=args.ca_key)))
    stored = _store_name(args.key, "--key")
    usages = [_usage(u) for u in (args.usage or sorted(_USAGES))]
    now = datetime.now(UTC)
    dns: list[str] | None = args.dns or None  # None: keep the CSR's SAN
    ips: list[str] | None = args.ip or None
    if args.csr and stored:
        raise ConfigError("--csr and --key: give one (the CSR names its own key)")
    if stored:
        if not args.subject:
            raise ConfigError("--subject: required without --csr")
        from veritee.cli._keys import store_from_args

        public: Any = store_from_args(args).public_key(stored)  # EC, Ed25519 or RSA
        cert = issue_leaf(ca, public, now=now,
                          subject=args.subject, usages=usages, valid_for=_days(args.days),
                          dns_names=dns, ip_addresses=ips)
    elif args.csr:
        csr = load_csr(_read(args.csr, "CSR"), source=args.csr)
        cert = issue_leaf(ca, csr, now=now, subject=args.subject, usages=usages,
                          valid_for=_days(args.days), dns_names=dns, ip_addresses=ips)
    else:
        if not args.subject:
            raise ConfigError("--subject: required without --csr")
        key = _new_key(args)
        cert = issue_leaf(ca, key.public_key(), now=now, subject=args.subject, usages=usages,
                          valid_for=_days(args.days), dns_names=dns, ip_addresses=ips)
        _write_key(out / "key.pem", private_key_pem(key))
        print(f"wrote {out / 'key.pem'} (mode 0600)")
    atomic_write(out / "cert.pem", certificate_pem(cert), 0o644)
    print(f"wrote {out / 'cert.pem'}: {cert.subject.rfc4514_string()}, issued by "
          f"{cert.issuer.rfc4514_string()}, until {cert.not_valid_after_utc.isoformat()}")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from veritee.crypto.certs import load_certificate, verify_leaf

    leaf = load_certificate(_read(args.cert, "certificate"), source=args.cert)
    ca = load_certificate(_read(args.ca, "CA certificate"), source=args.ca)
    verify_leaf(leaf, ca, now=args.at or datetime.now(UTC), usage=_usage(args.usage))
    print(f"{args.cert}: OK (issued by {ca.subject.rfc4514_string()}, valid, {args.usage})")
    return EXIT_OK


def _describe(cert: x509.Certificate) -> tuple[list[str], dict[str, object]]:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from veritee.crypto.certs import fingerprint
    from veritee.ratls import OID_TCG_DICE_CMW, OID_TCG_DICE_ENDORSEMENT_MANIFEST

    oids = {e.oid.dotted_string for e in cert.extensions}
    info: dict[str, object] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256_fingerprint": fingerprint(cert),
        # The 64-byte binding the evidence's report data must equal (ratls.report_data_for).
        "spki_sha512": hashlib.sha512(cert.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest(),
        "evidence_extension": OID_TCG_DICE_CMW.dotted_string in oids,
        "endorsements_extension": OID_TCG_DICE_ENDORSEMENT_MANIFEST.dotted_string in oids,
    }
    lines = [f"{k}: {v}" for k, v in info.items()]
    return lines, info


def _vendor_anchors(vendor: str, paths: list[str]) -> Any:
    """``--trust-root`` PEM files as the anchors of ``vendor`` (emulated roots are trusted
    only so). AMD's verifier takes a TrustAnchors of ARKs; the others take certificates."""
    if vendor == "amd":
        from veritee.crypto.amd_certs import load_certificates
        from veritee.trust.roots import TrustAnchors

        return TrustAnchors.from_certificates(*[
            c for path in paths for c in load_certificates(_read(path, "trust root"),
                                                           source=path)])
    from veritee.crypto._x509 import load_certificate_chain

    return [c for path in paths
            for c in load_certificate_chain(_read(path, "trust root"), structure=path)]


def _inspect_inputs(args: argparse.Namespace, scheme: Any) -> tuple[Any, Any, Any]:
    """(policy, collateral, anchors) for the scheme the certificate's evidence names."""
    from pathlib import Path

    from veritee.policy._load import load_mapping

    policy = (scheme.policy_from_mapping(load_mapping(args.policy)) if args.policy
              else scheme.default_policy())
    # --crl is one more collateral file, read by the scheme as --certs are (as in verify).
    paths = [Path(p) for p in args.certs or []] + ([Path(args.crl)] if args.crl else [])
    collateral = scheme.load_collateral(paths) if paths else None
    anchors = _vendor_anchors(scheme.vendor, args.trust_root) if args.trust_root else None
    return policy, collateral, anchors


def _cmd_inspect(args: argparse.Namespace) -> int:
    from veritee import schemes
    from veritee.crypto.certs import load_certificate
    from veritee.ratls import extract_evidence, verify_attested_certificate

    cert = load_certificate(_read(args.cert, "certificate"), source=args.cert)
    lines, info = _describe(cert)
    carried = extract_evidence(cert)  # ratls.evidence.missing (exit 4) without it
    scheme = schemes.get(carried.scheme)
    info["scheme"] = scheme.name
    lines.append(f"scheme: {scheme.name} ({len(carried.report)} bytes of evidence)")
    if not args.trust_root:
        lines.append(f"trust: the pinned {scheme.vendor} roots (pass --trust-root for an "
                     "emulated platform)")
    policy, collateral, anchors = _inspect_inputs(args, scheme)
    ca = load_certificate(_read(args.ca, "CA certificate"), source=args.ca) if args.ca else None
    try:
        appraisal = verify_attested_certificate(
            cert, policy=policy, collateral=collateral, anchors=anchors, now=args.at, ca=ca)
    except PolicyRejected as rejected:
        _emit(args, "\n".join([*lines, rejected.appraisal.to_text()]),
              {"certificate": info, "appraisal": rejected.appraisal.to_dict()})
        return EXIT_POLICY_REJECTED
    except VerificationError:
        if args.format == "text":
            print("\n".join(lines))
        raise
    _emit(args, "\n".join([*lines, appraisal.to_text()]),
          {"certificate": info, "appraisal": appraisal.to_dict()})
    return EXIT_OK


def _cmd_attested(args: argparse.Namespace) -> int:
    if args.hours < 1:
        raise ConfigError(f"--hours: got {args.hours}, want >= 1")
    if args.tee == "tpm":
        from veritee.errors import PlatformError

        raise PlatformError("--tee tpm: a certificate's TPM quote verifies only against an "
                            "AK the verifier enrolled (credential activation, "
                            "veritee.platform.tpm.register_ak) or an AK certificate, which "
                            "`cert inspect` cannot take; issue it with the Python API "
                            "(veritee.ratls.issue_attested_certificate(TpmAdapter(tpm), key)) "
                            "or use --tee snp, tdx or sgx")
    if args.tee in ("tdx", "sgx"):
        return _attested_intel(args)
    return _attested_snp(args)


def _issue(args: argparse.Namespace, platform: Any, now: datetime) -> None:
    """Inside the TEE: the key is made here and never leaves (except to key.pem, for demos)."""
    from datetime import timedelta
    from pathlib import Path

    from veritee._fs import atomic_write
    from veritee.crypto.certs import certificate_pem, private_key_pem
    from veritee.ratls import issue_attested_certificate

    out = Path(args.out)
    key = _new_key(args)
    cert = issue_attested_certificate(platform, key, now=now, subject=args.subject,
                                      dns_names=args.dns, ip_addresses=args.ip,
                                      valid_for=timedelta(hours=args.hours))
    atomic_write(out / "cert.pem", certificate_pem(cert), 0o644)
    _write_key(out / "key.pem", private_key_pem(key))


def _write_policy(out: Any, scheme_name: str, policy: Any) -> None:
    import json

    from veritee import schemes
    from veritee._fs import atomic_write

    mapping = schemes.get(scheme_name).policy_to_mapping(policy)
    atomic_write(out / "policy.json", (json.dumps(mapping, indent=2) + "\n").encode(), 0o644)


def _attested_snp(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cryptography.hazmat.primitives.serialization import Encoding

    from veritee._fs import atomic_write
    from veritee.cli._demo import demo_image
    from veritee.formats.sevsnp import GuestPolicy, Product
    from veritee.platform.adapters import SnpPlatform
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
    from veritee.policy.sevsnp import SevSnpPolicy

    out = Path(args.out)
    machine = InsecureEmulatedSnpMachine.create(Product(args.product), key_size=args.key_size)
    guest = machine.launch(simple_guest_image(demo_image()),
                           policy=GuestPolicy(smt=True, debug=args.debug_guest))
    _issue(args, SnpPlatform(guest), machine.now())
    certs = machine.certificates()
    for name, c in (("ark", certs.ark), ("ask", certs.ask), ("vcek", certs.vek)):
        assert c is not None
        atomic_write(out / "certs" / f"{name}.pem", c.public_bytes(Encoding.PEM), 0o644)
    assert certs.crl is not None  # the ARK's CRL: the default policy refuses without it
    atomic_write(out / "certs" / "crl.pem", certs.crl.public_bytes(Encoding.PEM), 0o644)
    _write_policy(out, "sevsnp", SevSnpPolicy(policy_id="emulated-workload",
                                              measurements=frozenset({guest.measurement})))
    print(f"wrote {out / 'cert.pem'}, {out / 'key.pem'} (mode 0600), {out / 'certs'}/ and "
          f"{out / 'policy.json'} (pins measurement {guest.measurement.hex()[:16]}...)")
    print(f"inspect with: veritee cert inspect {out / 'cert.pem'} --trust-root "
          f"{out / 'certs' / 'ark.pem'} --crl {out / 'certs' / 'crl.pem'} "
          f"--policy {out / 'policy.json'}")
    return EXIT_OK


def _attested_intel(args: argparse.Namespace) -> int:
    """A fresh emulated Intel vendor and CPU; a TD or an enclave of the demo image makes the
    key and the certificate; the vendor's collateral and root go to ``--out``/collateral."""
    from datetime import UTC, datetime
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import rsa

    from veritee.cli._demo import demo_image
    from veritee.platform.adapters import SgxPlatform, TdxPlatform
    from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
    from veritee.policy.intel import SgxPolicy, TdxPolicy

    out = Path(args.out)
    now = datetime.now(UTC)
    vendor = EmulatedIntelVendor.generate()
    cpu = EmulatedIntelCpu(vendor)
    platform: Any
    if args.tee == "tdx":
        from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine

        td = InsecureEmulatedTdxMachine(vendor, cpu=cpu).launch(demo_image(),
                                                                debug=args.debug_guest)
        platform, pin = TdxPlatform(td), td.mr_td
        policy: Any = TdxPolicy(policy_id="emulated-workload", mrtd=frozenset({pin}))
    else:
        from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine

        signer = rsa.generate_private_key(public_exponent=3, key_size=3072)
        enclave = InsecureEmulatedSgxMachine(vendor, cpu=cpu).load(
            demo_image(), signer, debug=args.debug_guest)
        platform, pin = SgxPlatform(enclave), enclave.mr_enclave
        policy = SgxPolicy(policy_id="emulated-workload", mrenclave=frozenset({pin}))
    _issue(args, platform, now)
    vendor.write_collateral(out / "collateral", args.tee.upper(), now)
    _write_policy(out, args.tee, policy)
    col = out / "collateral"
    print(f"wrote {out / 'cert.pem'}, {out / 'key.pem'} (mode 0600), {col}/ and "
          f"{out / 'policy.json'} (pins {'MRTD' if args.tee == 'tdx' else 'MRENCLAVE'} "
          f"{pin.hex()[:16]}...)")
    print(f"inspect with: veritee cert inspect {out / 'cert.pem'} --trust-root "
          f"{col / 'root_ca.pem'} --certs {col} --policy {out / 'policy.json'}")
    return EXIT_OK
