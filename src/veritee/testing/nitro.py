"""A fake AWS Nitro PKI and NSM: a root -> intermediates -> leaf chain with the Nitro certificate
profile and real P-384 keys, signing attestation documents (COSE_Sign1, ES384).

The fake signs for real, so tests run :func:`veritee.trust.nitro.verify_document` (and the
``nitro`` scheme) unchanged; only the trust anchor differs (:meth:`FakeNitro.anchors`, never
trusted unless passed)::

    nitro = FakeNitro()
    doc = nitro.document(nonce=binding, pcrs={0: image_digest})
    attest.verify(doc, policy=..., anchors=Anchors({"aws": nitro.anchors()}), now=nitro.now)

Certificate profile (nsm-api ``docs/attestation_process.md`` section 3.2.3 and the real chains):
every certificate is ECDSA P-384 signed with ecdsa-with-SHA384; CAs carry a critical
basicConstraints CA=TRUE with a pathLenConstraint covering the CAs below and a critical
keyUsage keyCertSign + cRLSign; the leaf (the NSM's per-boot signing certificate) is
basicConstraints CA=FALSE and keyUsage digitalSignature, valid for three hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.formats.cose import COSE_SIGN1_TAG, Tag, encode_cbor

__all__ = ["DEFAULT_NOW", "FakeNitro"]

DEFAULT_NOW = datetime(2025, 1, 1, tzinfo=UTC)
"""The instant the default validity windows are built around (a constant, not a clock)."""

_PROTECTED = encode_cbor({1: -35})  # ES384, the only header the NSM writes (section 3.1)
_LEAF_LIFETIME = timedelta(hours=3)


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


_ROOT_NAME = _name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "Amazon"),
                   (NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
                   (NameOID.COMMON_NAME, "aws.nitro-enclaves"))


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


@dataclass(frozen=True)
class _Pki:
    certs: tuple[x509.Certificate, ...]  # root first
    keys: tuple[ec.EllipticCurvePrivateKey, ...]


class FakeNitro:
    """A fake Nitro PKI (``intermediates`` CAs under a root named like AWS's) and an NSM.

    ``now`` sets every window: the CAs are valid from 30 days before to 30 days after, the
    leaf for three hours from five minutes before ``now`` (``leaf_validity`` overrides it, e.g.
    to build an expired leaf).
    """

    def __init__(self, *, now: datetime = DEFAULT_NOW, intermediates: int = 3,
                 leaf_validity: tuple[datetime, datetime] | None = None,
                 region: str = "us-east-1") -> None:
        self.now = now
        self.region = region
        count = intermediates + 2
        keys = tuple(ec.generate_private_key(ec.SECP384R1()) for _ in range(count))
        names = [_ROOT_NAME,
                 *(_name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "Amazon"),
                         (NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
                         (NameOID.COMMON_NAME, f"fake{i}.{region}.aws.nitro-enclaves"))
                   for i in range(intermediates)),
                 _name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "Amazon"),
                       (NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
                       (NameOID.COMMON_NAME, f"i-0fake.{region}.aws"))]
        leaf_from = now - timedelta(minutes=5)
        leaf_window = leaf_validity or (leaf_from, leaf_from + _LEAF_LIFETIME)
        certs: list[x509.Certificate] = []
        for i, key in enumerate(keys):
            leaf = i == count - 1
            not_before, not_after = (leaf_window if leaf else
                                     (now - timedelta(days=30), now + timedelta(days=30)))
            builder = (x509.CertificateBuilder()
                       .subject_name(names[i]).issuer_name(names[i - 1] if i else names[0])
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(not_before).not_valid_after(not_after)
                       .add_extension(x509.BasicConstraints(
                           ca=not leaf, path_length=None if leaf else count - 2 - i),
                           critical=True)
                       .add_extension(_usage(ca=not leaf), critical=True))
            certs.append(builder.sign(keys[i - 1] if i else key, hashes.SHA384()))
        self._pki = _Pki(tuple(certs), keys)

    @property
    def root(self) -> x509.Certificate:
        """The fake root certificate."""
        return self._pki.certs[0]

    @property
    def leaf(self) -> x509.Certificate:
        """The NSM signing certificate."""
        return self._pki.certs[-1]

    @property
    def leaf_key(self) -> ec.EllipticCurvePrivateKey:
        """The NSM signing key."""
        return self._pki.keys[-1]

    def anchors(self) -> list[x509.Certificate]:
        """The fake root, for ``Anchors({"aws": ...})`` / ``trusted_roots`` (explicit opt-in)."""
        return [self.root]

    def cabundle(self) -> tuple[bytes, ...]:
        """``[root, intermediate...]`` in DER, as the NSM writes it (section 3.2.3)."""
        return tuple(c.public_bytes(Encoding.DER) for c in self._pki.certs[:-1])

    def payload(self, *, pcrs: Mapping[int, bytes] | None = None, nonce: bytes | None = None,
                public_key: bytes | None = None, user_data: bytes | None = None,
                module_id: str = "i-0fake-enc0fake", digest: str = "SHA384",
                timestamp: datetime | None = None, debug: bool = False) -> bytes:
        """The ``AttestationDocument`` CBOR map (section 2.2), NSM key order.

        ``pcrs`` default to PCR0..PCR4 and PCR8 with distinct non-zero values (all zero with
        ``debug``, as a debug-mode enclave reports them); given ones replace defaults.
        """
        values = {i: bytes(48) if debug else bytes([0x10 + i]) * 48 for i in (0, 1, 2, 3, 4, 8)}
        values.update(pcrs or {})
        when = timestamp or self.now
        return encode_cbor({
            "module_id": module_id, "digest": digest,
            "timestamp": int(when.timestamp() * 1000),
            "pcrs": dict(sorted(values.items())),
            "certificate": self.leaf.public_bytes(Encoding.DER), "cabundle": self.cabundle(),
            "public_key": public_key, "user_data": user_data, "nonce": nonce,
        })

    def sign(self, payload: bytes, *, key: ec.EllipticCurvePrivateKey | None = None,
             tagged: bool = False) -> bytes:
        """A COSE_Sign1 over ``payload`` signed ES384 by the leaf key (or ``key``)."""
        to_sign = encode_cbor(("Signature1", _PROTECTED, b"", payload))
        der = (key or self.leaf_key).sign(to_sign, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        body: tuple[bytes, dict[int, int], bytes, bytes] = (_PROTECTED, {}, payload, signature)
        return encode_cbor(Tag(COSE_SIGN1_TAG, body) if tagged else body)

    def document(self, *, pcrs: Mapping[int, bytes] | None = None, nonce: bytes | None = None,
                 public_key: bytes | None = None, user_data: bytes | None = None,
                 debug: bool = False, timestamp: datetime | None = None,
                 key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        """A signed attestation document with the chosen fields (see :meth:`payload`)."""
        return self.sign(self.payload(pcrs=pcrs, nonce=nonce, public_key=public_key,
                                      user_data=user_data, debug=debug, timestamp=timestamp),
                         key=key)
