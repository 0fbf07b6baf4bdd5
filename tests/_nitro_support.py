"""AWS Nitro samples of ../shared/evidence/MANIFEST-2.json (never copied here) and a fake
Nitro PKI that signs for real, so forged documents run the production verification path.

``NITRO_CASES`` lists every attestation document of every ``family: nitro`` sample with the
time at which the manifest says it verifies (quoted from each sample's ``how_to_verify``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.formats.nitro import NitroDocument, NitroPayload

from _evidence import EVIDENCE_DIR

MANIFEST = "MANIFEST-2.json"
ROOT_PEM = EVIDENCE_DIR / "roots" / "aws-nitro-enclaves-root-g1.pem"
DOC_TIME = None  # "verify at the document's own timestamp"


@dataclass(frozen=True)
class NitroCase:
    """One document file of one manifest sample, with its evaluation time."""

    sample_id: str
    file: str
    at: datetime | None  # None: the document's own timestamp
    debug: bool

    @property
    def path(self) -> Path:
        return EVIDENCE_DIR / SAMPLE_DIRS[self.sample_id] / self.file

    @property
    def id(self) -> str:
        return f"{self.sample_id}/{self.file}"

    def load(self) -> tuple[bytes, NitroDocument, datetime]:
        raw = self.path.read_bytes()
        doc = NitroDocument.from_bytes(raw)
        return raw, doc, self.at or doc.payload.timestamp


SAMPLE_DIRS = {
    "evervault-ga-doc-with-tls-cert": "nitro/evervault-ga-doc-with-tls-cert",
    "evervault-beta-docs-debug-and-prod": "nitro/evervault-beta-docs-debug-and-prod",
    "evervault-beta-doc-in-tls-cert-san": "nitro/evervault-beta-doc-in-tls-cert-san",
    "brave-nitro-utils-example-doc": "nitro/brave-nitro-utils-example-doc",
}

# how_to_verify: "Source CI pins FAKETIME='2023-09-18 17:18:00' ... use 2023-09-18T17:18:00Z."
_GA_TIME = datetime(2023, 9, 18, 17, 18, 0, tzinfo=UTC)
# how_to_verify: "certs generated 2023-01-18 ~15:15 UTC (epoch 1674054914) - verify at
# 2023-01-18T15:15:14Z."
_SAN_TIME = datetime(2023, 1, 18, 15, 15, 14, tzinfo=UTC)

NITRO_CASES: tuple[NitroCase, ...] = (
    NitroCase("evervault-ga-doc-with-tls-cert", "attestation_doc.cbor", _GA_TIME, True),
    # "Verify at each doc's own timestamp (known_fields.*.timestamp_utc)."
    NitroCase("evervault-beta-docs-debug-and-prod", "valid-attestation-doc-bytes", DOC_TIME,
              False),
    NitroCase("evervault-beta-docs-debug-and-prod", "debug-mode-attestation-doc-bytes",
              DOC_TIME, True),
    NitroCase("evervault-beta-doc-in-tls-cert-san", "extracted_doc_debug.cbor", _SAN_TIME, True),
    NitroCase("evervault-beta-doc-in-tls-cert-san", "extracted_doc_nondebug.cbor", _SAN_TIME,
              False),
    NitroCase("evervault-beta-doc-in-tls-cert-san", "extracted_doc_nondebug_der.cbor",
              _SAN_TIME, False),
    # "Verify at the doc timestamp (known_fields.timestamp_utc)."
    NitroCase("brave-nitro-utils-example-doc", "attestation_doc.cbor", DOC_TIME, True),
)


def case(sample_id: str, file: str) -> NitroCase:
    """The case for one file."""
    return next(c for c in NITRO_CASES if c.sample_id == sample_id and c.file == file)


# --- a fake Nitro PKI ------------------------------------------------------------------------

AWS_ROOT_NAME = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
    x509.NameAttribute(NameOID.COMMON_NAME, "aws.nitro-enclaves"),
])


@dataclass(frozen=True)
class FakePki:
    """root, intermediates (CAs) and a leaf, each with its P-384 key; root first."""

    certs: tuple[x509.Certificate, ...]
    keys: tuple[ec.EllipticCurvePrivateKey, ...]

    @property
    def root(self) -> x509.Certificate:
        return self.certs[0]

    @property
    def leaf(self) -> x509.Certificate:
        return self.certs[-1]

    @property
    def leaf_key(self) -> ec.EllipticCurvePrivateKey:
        return self.keys[-1]

    def cabundle(self) -> tuple[bytes, ...]:
        return tuple(c.public_bytes(Encoding.DER) for c in self.certs[:-1])


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(at: datetime, *, intermediates: int = 3,
             root_name: x509.Name = AWS_ROOT_NAME) -> FakePki:
    """A root (named like the AWS root by default), ``intermediates`` CAs and a 3-hour leaf."""
    keys = [ec.generate_private_key(ec.SECP384R1()) for _ in range(intermediates + 2)]
    names = [root_name, *(_name(f"fake-intermediate-{i}") for i in range(intermediates)),
             _name("i-0fake-enc0fake.us-east-1.aws")]
    certs: list[x509.Certificate] = []
    for i, key in enumerate(keys):
        is_leaf = i == len(keys) - 1
        issuer_key = keys[i - 1] if i else key
        lifetime = timedelta(hours=3) if is_leaf else timedelta(days=30)
        builder = (x509.CertificateBuilder()
                   .subject_name(names[i]).issuer_name(names[i - 1] if i else names[0])
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(at - timedelta(minutes=5))
                   .not_valid_after(at - timedelta(minutes=5) + lifetime)
                   .add_extension(x509.BasicConstraints(
                       ca=not is_leaf, path_length=None if is_leaf else len(keys) - 2 - i),
                       critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=not is_leaf, crl_sign=not is_leaf, encipher_only=False,
                       decipher_only=False), critical=True))
        certs.append(builder.sign(issuer_key, hashes.SHA384()))
    return FakePki(tuple(certs), tuple(keys))


def resign(payload: NitroPayload, key: ec.EllipticCurvePrivateKey, **changes: object) -> bytes:
    """Re-encode ``payload`` with ``changes`` and sign it (ES384) with ``key``."""
    new = dataclasses.replace(payload, **changes)  # type: ignore[arg-type]
    new = NitroPayload.from_bytes(new.to_bytes())
    unsigned = NitroDocument(protected=b"\xa1\x01\x38\x22", payload=new, signature=b"",
                             tagged=False, raw=b"")
    der = key.sign(unsigned.sig_structure, ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    sig = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    return dataclasses.replace(unsigned, signature=sig).to_bytes()


def forge(payload: NitroPayload, pki: FakePki, **changes: object) -> bytes:
    """``payload`` re-issued by ``pki``: its leaf and bundle, signed by its leaf key."""
    fields: dict[str, object] = {
        "certificate": pki.leaf.public_bytes(Encoding.DER), "cabundle": pki.cabundle(),
        "timestamp_ms": int(pki.leaf.not_valid_before_utc.timestamp() * 1000) + 60_000,
    }
    fields.update(changes)
    return resign(payload, pki.leaf_key, **fields)
