"""A fake NVIDIA device: a device identity chain with NVIDIA's profile and real P-384 keys,
signing SPDM 1.1 GET_MEASUREMENTS transcripts with a chosen nonce and measurement blocks.

The fake signs for real, so tests run :func:`veritee.trust.nvidia.verify_gpu_report` (and the
``nvidia`` scheme) unchanged; only the root differs (:meth:`FakeNvidia.anchors`: explicit
opt-in)::

    gpu = FakeNvidia()
    report = gpu.report(nonce=binding)
    part = EvidencePart(report, "nvidia", attached=gpu.chain_pem())
    verifier = Verifier(anchors=Anchors({"nvidia": gpu.anchors()}))

Chain profile, as the real Hopper chains (leaf first): ``GH100 A01 GSP FMC LF`` <- ``GH100 A01
GSP BROM`` <- ``NVIDIA GH100 Provisioner ICA 1`` <- ``NVIDIA GH100 Identity`` <- ``NVIDIA
Device Identity CA`` (self-signed); every certificate ECDSA P-384 / SHA-384; CAs with a critical
basicConstraints CA=TRUE and keyUsage keyCertSign; the leaf with keyUsage digitalSignature and
the TCG DICE TcbInfo extension (OID 2.23.133.5.4.1) holding the firmware ID as
``SEQUENCE { hashAlg sha384, OCTET STRING fwid }`` -- the FWID the report's opaque data
repeats and :mod:`veritee.trust.nvidia` matches (``04 30 <fwid>``).
"""

from __future__ import annotations

import json
import os
from base64 import b64encode
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.formats.nvidia import (
    DmtfMeasurement,
    GpuReport,
    MeasurementBlock,
    MeasurementsRequest,
    MeasurementsResponse,
    OpaqueData,
    OpaqueField,
    OpaqueType,
)

__all__ = ["DEFAULT_NOW", "TCB_INFO_OID", "FakeNvidia"]

DEFAULT_NOW = datetime(2025, 1, 1, tzinfo=UTC)
"""The instant the default validity windows are built around (a constant, not a clock)."""

TCB_INFO_OID = x509.ObjectIdentifier("2.23.133.5.4.1")
_SHA384_OID_DER = bytes.fromhex("0609608648016503040202")  # 2.16.840.1.101.3.4.2.2


def _der(tag: int, body: bytes) -> bytes:
    """One DER TLV (definite length)."""
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def tcb_info(fwid: bytes) -> bytes:
    """The TcbInfo extension value: ``SEQUENCE { INTEGER 1, SEQUENCE { sha384, fwid } }``."""
    return _der(0x30, _der(0x02, b"\x01") + _der(0x30, _SHA384_OID_DER + _der(0x04, fwid)))


def _name(cn: str, org: str = "NVIDIA Corporation") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_NAMES = (_name("NVIDIA Device Identity CA", "NVIDIA"), _name("NVIDIA GH100 Identity"),
          _name("NVIDIA GH100 Provisioner ICA 1"), _name("GH100 A01 GSP BROM"),
          _name("GH100 A01 GSP FMC LF"))


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


def _vbios(version: str) -> bytes:
    """The binary VBIOS_VERSION a GPU writes for ``"96.00.9f.00.01"`` (the inverse of
    :attr:`~veritee.formats.nvidia.OpaqueData.vbios_version`)."""
    p = [int(x, 16) for x in version.split(".")]
    return bytes([p[3], p[2], p[1], p[0], p[4], 0, 0, 0])


class FakeNvidia:
    """A fake GPU: its five-certificate identity chain and an SPDM responder.

    ``fwid`` is the firmware ID in the leaf's TcbInfo (and, by default, in each report);
    ``validity`` replaces every certificate's window (e.g. to build an expired chain).
    """

    def __init__(self, *, now: datetime = DEFAULT_NOW, fwid: bytes | None = None,
                 validity: tuple[datetime, datetime] | None = None) -> None:
        self.now = now
        self.fwid = fwid if fwid is not None else bytes(range(48))
        not_before, not_after = validity or (now - timedelta(days=365),
                                             now + timedelta(days=3650))
        keys = tuple(ec.generate_private_key(ec.SECP384R1()) for _ in _NAMES)
        certs: list[x509.Certificate] = []
        for i, key in enumerate(keys):
            leaf = i == len(keys) - 1
            builder = (x509.CertificateBuilder().subject_name(_NAMES[i])
                       .issuer_name(_NAMES[i - 1] if i else _NAMES[0])
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(not_before).not_valid_after(not_after)
                       .add_extension(_usage(ca=not leaf), critical=True))
            if leaf:
                builder = builder.add_extension(
                    x509.UnrecognizedExtension(TCB_INFO_OID, tcb_info(self.fwid)),
                    critical=False)
            else:
                builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                                critical=True)
            certs.append(builder.sign(keys[i - 1] if i else key, hashes.SHA384()))
        self.chain = tuple(reversed(certs))  # leaf first, as the driver returns it
        self.leaf_key = keys[-1]

    @property
    def root(self) -> x509.Certificate:
        """The fake NVIDIA Device Identity CA."""
        return self.chain[-1]

    def anchors(self) -> list[x509.Certificate]:
        """The fake root, for ``Anchors({"nvidia": ...})`` / ``trusted_roots``."""
        return [self.root]

    def chain_pem(self) -> bytes:
        """The device chain in PEM, leaf first (what ``parse(attached=...)`` takes)."""
        return b"".join(c.public_bytes(Encoding.PEM) for c in self.chain)

    def transcript(self, *, nonce: bytes = bytes(32),
                   blocks: Mapping[int, bytes] | None = None,
                   driver_version: str = "550.90.07", vbios_version: str = "96.00.9f.00.01",
                   fwid: bytes | None = None, param2: int = 0xFF,
                   key: ec.EllipticCurvePrivateKey | None = None) -> GpuReport:
        """A signed GET_MEASUREMENTS transcript (DSP0274 1.1) with ``nonce`` and ``blocks``
        (SPDM index -> 48-byte value; default: blocks 1..8 with distinct values)."""
        values = dict(blocks) if blocks is not None else {i: bytes([i]) * 48
                                                          for i in range(1, 9)}
        measured = tuple(MeasurementBlock(i, DmtfMeasurement(0x01, v))
                         for i, v in sorted(values.items()))
        opaque = OpaqueData((
            OpaqueField(OpaqueType.DRIVER_VERSION, driver_version.encode() + b"\0"),
            OpaqueField(OpaqueType.VBIOS_VERSION, _vbios(vbios_version)),
            OpaqueField(OpaqueType.FWID, self.fwid if fwid is None else fwid),
            OpaqueField(OpaqueType.MSRSCNT, b"".join((1).to_bytes(4, "little")
                                                     for _ in measured)),
        ))
        request = MeasurementsRequest(param1=1, param2=param2, nonce=nonce, slot_id=0)
        response = MeasurementsResponse(param1=0, slot_id=0, blocks=measured,
                                        nonce=os.urandom(32), opaque=opaque, signature=b"",
                                        opaque_raw=opaque.to_bytes())
        unsigned = GpuReport(request, response)
        der = (key or self.leaf_key).sign(unsigned.signed_data, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        signed = MeasurementsResponse(param1=0, slot_id=0, blocks=measured,
                                      nonce=response.nonce, opaque=opaque,
                                      signature=r.to_bytes(48, "big") + s.to_bytes(48, "big"),
                                      opaque_raw=response.opaque_raw)
        return GpuReport(request, signed)

    def report(self, **options: Any) -> bytes:
        """:meth:`transcript` (same options) as the binary evidence bytes."""
        return self.transcript(**options).to_bytes()

    def nvat(self, reports: Sequence[bytes], *, nonce: bytes | None = None,
             arch: str = "HOPPER") -> bytes:
        """nvat evidence JSON with one entry per report (all from this device's chain);
        ``nonce`` is the JSON's nonce field (default: each report's own request nonce)."""
        pem = b64encode(self.chain_pem()).decode()
        entries = [{"arch": arch, "nonce": (nonce or GpuReport.from_bytes(r).nonce).hex(),
                    "evidence": b64encode(r).decode(), "certificate": pem} for r in reports]
        return json.dumps(entries).encode()
