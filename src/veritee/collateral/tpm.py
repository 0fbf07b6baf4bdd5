"""Loaders for the file forms TPM quotes travel in. Bytes/JSON in, typed evidence out; no network.

Formats read (all cited by project and file, none copied):

* trustee ``tpm`` verifier evidence JSON: ``ak_public`` (base64 SPKI DER), ``tpm_quote``
  {``message``: base64 TPMS_ATTEST, ``signature``: base64 TPMT_SIGNATURE, ``pcrs``: 24 hex
  SHA-256 values}. Optional members veritee reads beside them (and the swtpm attester writes,
  :func:`veritee.formats.tpm.encode_tpm_evidence_json`): ``ak_tpmt_public`` (base64
  TPMT_PUBLIC of the same key, so its attributes can be checked), ``ak_certificate`` and
  ``ak_intermediates`` (base64 DER), ``event_log`` (base64), and ``pcrs`` also as an object
  ``{bank: {index: hex}}`` for banks other than SHA-256 or PCRs not numbered from 0.
* trustee ``az-snp-vtpm`` / ``az-tdx-vtpm`` evidence JSON: v0 carries byte arrays as JSON int
  lists (``quote`` + ``report`` or ``tpm_quote`` + ``hcl_report``), v1/v2 hex strings for the
  quote and unpadded base64url for the HCL report; the quote signature is a bare 256-byte
  RSASSA-PKCS1-v1_5/SHA-256 signature; the 24 PCRs are the SHA-256 bank.
* go-attestation ``attest-tool dump`` JSON: ``AK.Public`` (TPMT_PUBLIC), ``Quote`` {``Nonce``,
  ``Quote``, ``Signature``}, ``Log`` {``PCRs`` [{Index, Digest, DigestAlg (Go crypto.Hash:
  3 = SHA-1, 5 = SHA-256, 6 = SHA-384)}], ``Raw``}.
* go-tpm-tools ``attest.Attestation`` protobuf (proto/attest.proto): 1 ak_pub, 2 quotes
  (1 quote, 2 raw_sig, 3 pcrs {1 hash, 2 map<uint32, bytes>}), 3 event_log, 6 ak_cert.
  Read with a minimal, bounded protobuf wire reader (varint and length-delimited fields only).

Every malformed input raises :class:`~veritee.errors.FormatError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee._decode import LIMITS, load_json
from veritee.errors import FormatError
from veritee.formats.tpm import HashAlg, TpmtPublic, TpmtSignature
from veritee.trust.tpm import AkPublic

__all__ = [
    "QuoteEvidence",
    "load_go_attestation_dump",
    "load_go_tpm_tools_attestation",
    "load_spki_public_key",
    "load_trustee_azure_vtpm",
    "load_trustee_tpm",
]


@dataclass(frozen=True)
class QuoteEvidence:
    """One quote with what travelled next to it.

    ``ak`` is the AK the file carries (``None`` for Azure, where it comes from the HCL report);
    whether to trust it is the caller's decision. ``event_log``, ``hcl_report`` and
    ``ak_cert`` are raw bytes for the matching parser.
    """

    attest: bytes
    signature: TpmtSignature
    pcrs: dict[HashAlg, dict[int, bytes]]
    ak: AkPublic | None = None
    nonce: bytes | None = None
    event_log: bytes | None = None
    hcl_report: bytes | None = field(default=None, repr=False)
    ak_cert: bytes | None = field(default=None, repr=False)
    ak_intermediates: tuple[bytes, ...] = field(default=(), repr=False)
    vcek: bytes | None = field(default=None, repr=False)  # Azure SNP: PEM or DER
    td_quote: bytes | None = field(default=None, repr=False)  # Azure TDX: the TD quote


def _json(source: str | bytes | Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    data = load_json(source, structure=name, max_size=LIMITS["evidence"])
    if not isinstance(data, dict):
        raise FormatError(name, "<json>", got=type(data).__name__, want="an object")
    return data


def _get(obj: Mapping[str, Any], key: str, name: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise FormatError(name, key, got="missing", want="present")
    return obj[key]


def _b64(value: Any, name: str, fld: str, *, url: bool = False) -> bytes:
    if not isinstance(value, str):
        raise FormatError(name, fld, got=type(value).__name__, want="base64 string")
    try:
        padded = value + "=" * (-len(value) % 4)
        return (base64.urlsafe_b64decode(padded) if url
                else base64.b64decode(padded, validate=True))
    except (ValueError, binascii.Error):
        raise FormatError(name, fld, got=value[:20], want="base64") from None


def _bytes_any(value: Any, name: str, fld: str) -> bytes:
    """trustee's encodings: int list (v0), hex string (v1/v2 quote fields)."""
    if isinstance(value, list):
        if not all(isinstance(b, int) and 0 <= b < 256 for b in value):
            raise FormatError(name, fld, got="list", want="a list of byte values")
        return bytes(value)
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise FormatError(name, fld, got=value[:20], want="hex") from None
    raise FormatError(name, fld, got=type(value).__name__, want="bytes as list or hex")


def _spki(der: bytes, name: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    try:
        key = (serialization.load_pem_public_key(der) if der.startswith(b"-----")
               else serialization.load_der_public_key(der))
    except ValueError:
        raise FormatError(name, "ak_public", got=der[:16], want="SubjectPublicKeyInfo"
                          ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise FormatError(name, "ak_public", got=type(key).__name__, want="RSA or EC key")
    return key


def _sha256_bank(values: Any, name: str) -> dict[HashAlg, dict[int, bytes]]:
    if isinstance(values, Mapping):
        return _bank_map(values, name)
    if not isinstance(values, list) or len(values) > 24:
        raise FormatError(name, "pcrs", got=type(values).__name__, want="<= 24 PCR values")
    bank = {i: _bytes_any(v, name, f"pcrs[{i}]") for i, v in enumerate(values)}
    return {HashAlg.SHA256: bank}


def _bank_map(values: Mapping[str, Any], name: str) -> dict[HashAlg, dict[int, bytes]]:
    out: dict[HashAlg, dict[int, bytes]] = {}
    if len(values) > 8:
        raise FormatError(name, "pcrs", got=f"{len(values)} banks", want="<= 8 banks")
    for bank_name, entries in values.items():
        bank = HashAlg.from_name(str(bank_name))
        if not isinstance(entries, Mapping) or len(entries) > 32:
            raise FormatError(name, f"pcrs.{bank_name}", got=type(entries).__name__,
                              want="an object of <= 32 index -> hex")
        bank_values: dict[int, bytes] = {}
        for index, value in entries.items():
            if not str(index).isdigit() or not 0 <= int(index) < 32:
                raise FormatError(name, f"pcrs.{bank_name}", got=index, want="PCR 0..31")
            bank_values[int(index)] = _bytes_any(value, name, f"pcrs.{bank_name}.{index}")
        out[bank] = bank_values
    return out


def _optional_b64(doc: Mapping[str, Any], key: str, name: str) -> bytes | None:
    value = doc.get(key)
    return None if value is None else _b64(value, name, key)


def load_spki_public_key(data: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """An AK given as SubjectPublicKeyInfo (PEM or DER)."""
    return _spki(bytes(data), "AK")


def load_trustee_tpm(source: str | bytes | Mapping[str, Any]) -> QuoteEvidence:
    """trustee ``tpm`` verifier evidence JSON (the AK is carried as base64 SPKI DER)."""
    name = "trustee-tpm-evidence"
    doc = _json(source, name)
    quote = _get(doc, "tpm_quote", name)
    spki_key = _spki(_b64(_get(doc, "ak_public", name), name, "ak_public"), name)
    ak: AkPublic = spki_key
    tpmt = _optional_b64(doc, "ak_tpmt_public", name)
    if tpmt is not None:
        # The same key with its attributes: it must be the key ak_public names.
        from veritee.trust.tpm import ak_spki

        full = TpmtPublic.from_bytes(tpmt)
        if ak_spki(full) != ak_spki(spki_key):
            raise FormatError(name, "ak_tpmt_public", got="another key",
                              want="the TPMT_PUBLIC of ak_public")
        ak = full
    inter = doc.get("ak_intermediates", [])
    if not isinstance(inter, list) or len(inter) > 8:
        raise FormatError(name, "ak_intermediates", got=type(inter).__name__,
                          want="a list of <= 8 base64 DER certificates")
    return QuoteEvidence(
        attest=_b64(_get(quote, "message", name), name, "tpm_quote.message"),
        signature=TpmtSignature.from_bytes(_b64(_get(quote, "signature", name), name,
                                                "tpm_quote.signature")),
        pcrs=_sha256_bank(_get(quote, "pcrs", name), name),
        ak=ak,
        event_log=_optional_b64(doc, "event_log", name),
        ak_cert=_optional_b64(doc, "ak_certificate", name),
        ak_intermediates=tuple(_b64(c, name, f"ak_intermediates[{n}]")
                               for n, c in enumerate(inter)),
    )


def load_trustee_azure_vtpm(source: str | bytes | Mapping[str, Any]) -> QuoteEvidence:
    """trustee Azure vTPM evidence (SNP or TDX, v0/v1/v2) or a bare ``tpm-quote`` JSON."""
    name = "trustee-az-vtpm-evidence"
    doc = _json(source, name)
    quote = doc.get("tpm_quote", doc.get("quote", doc))
    hcl_value = doc.get("hcl_report", doc.get("report"))
    hcl: bytes | None
    if hcl_value is None:
        hcl = None
    elif isinstance(hcl_value, str):
        hcl = _b64(hcl_value, name, "hcl_report", url=True)
    else:
        hcl = _bytes_any(hcl_value, name, "hcl_report")
    vcek_value = doc.get("vcek")
    vcek: bytes | None = None
    if isinstance(vcek_value, str):
        vcek = (vcek_value.encode() if vcek_value.lstrip().startswith("-----BEGIN")
                else _b64(vcek_value, name, "vcek", url=True))
    elif vcek_value is not None:
        raise FormatError(name, "vcek", got=type(vcek_value).__name__,
                          want="PEM or base64url DER")
    td_value = doc.get("td_quote")
    td_quote: bytes | None = None
    if isinstance(td_value, str):
        td_quote = _b64(td_value, name, "td_quote", url=True)
    elif td_value is not None:
        td_quote = _bytes_any(td_value, name, "td_quote")
    return QuoteEvidence(
        attest=_bytes_any(_get(quote, "message", name), name, "quote.message"),
        signature=TpmtSignature.rsassa(_bytes_any(_get(quote, "signature", name), name,
                                                  "quote.signature")),
        pcrs=_sha256_bank(_get(quote, "pcrs", name), name),
        hcl_report=hcl, vcek=vcek, td_quote=td_quote,
    )


_GO_HASHES = {3: HashAlg.SHA1, 5: HashAlg.SHA256, 6: HashAlg.SHA384, 7: HashAlg.SHA512}


def load_go_attestation_dump(source: str | bytes | Mapping[str, Any]) -> QuoteEvidence:
    """go-attestation ``attest-tool dump`` JSON (AK as TPMT_PUBLIC, event log included)."""
    name = "go-attestation-dump"
    doc = _json(source, name)
    ak = TpmtPublic.from_bytes(_b64(_get(_get(doc, "AK", name), "Public", name), name,
                                    "AK.Public"))
    quote = _get(doc, "Quote", name)
    log = _get(doc, "Log", name)
    pcrs: dict[HashAlg, dict[int, bytes]] = {}
    entries = _get(log, "PCRs", name)
    if not isinstance(entries, list) or len(entries) > 24 * 4:
        raise FormatError(name, "Log.PCRs", got=type(entries).__name__, want="a list")
    for n, entry in enumerate(entries):
        alg = _GO_HASHES.get(_get(entry, "DigestAlg", name))
        index = _get(entry, "Index", name)
        if alg is None or not isinstance(index, int) or not 0 <= index < 32:
            raise FormatError(name, f"Log.PCRs[{n}]", got=entry, want="Index, DigestAlg")
        pcrs.setdefault(alg, {})[index] = _b64(_get(entry, "Digest", name), name,
                                               f"Log.PCRs[{n}].Digest")
    return QuoteEvidence(
        attest=_b64(_get(quote, "Quote", name), name, "Quote.Quote"),
        signature=TpmtSignature.from_bytes(_b64(_get(quote, "Signature", name), name,
                                                "Quote.Signature")),
        pcrs=pcrs, ak=ak,
        nonce=_b64(_get(quote, "Nonce", name) or "", name, "Quote.Nonce"),
        event_log=_b64(_get(log, "Raw", name), name, "Log.Raw"),
    )


# -- minimal protobuf wire reader ----------------------------------------------------------
_PB = "attest.Attestation"
_MAX_FIELDS = 4096


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 64, 7):
        if pos >= len(buf):
            raise FormatError(_PB, "varint", offset=pos, got="end of buffer", want="a byte")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
    raise FormatError(_PB, "varint", offset=pos, got="> 10 bytes", want="a 64-bit varint")


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) for varint (0) and length-delimited (2) fields; others skipped."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        if len(out) >= _MAX_FIELDS:
            raise FormatError(_PB, "fields", offset=pos, got=">4096", want="fewer fields")
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((num, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise FormatError(_PB, f"field {num}", offset=pos, got=size,
                                  want=f"<= {len(buf) - pos}")
            out.append((num, buf[pos:pos + size]))
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise FormatError(_PB, f"field {num}", offset=pos, got=f"wire type {wire}",
                              want="0, 1, 2 or 5")
    if pos != len(buf):
        raise FormatError(_PB, "<length>", offset=pos, got="truncated field", want="end")
    return out


def _bytes_field(fields: list[tuple[int, int | bytes]], num: int) -> bytes | None:
    values = [v for n, v in fields if n == num]
    if not values:
        return None
    value = values[-1]
    if not isinstance(value, bytes):
        raise FormatError(_PB, f"field {num}", got="varint", want="bytes")
    return value


def load_go_tpm_tools_attestation(data: bytes) -> list[QuoteEvidence]:
    """go-tpm-tools ``attest.Attestation``: one :class:`QuoteEvidence` per quote (per bank)."""
    top = _fields(bytes(data))
    ak_pub = _bytes_field(top, 1)
    if ak_pub is None:
        raise FormatError(_PB, "ak_pub", got="missing", want="TPMT_PUBLIC")
    ak = TpmtPublic.from_bytes(ak_pub)
    log = _bytes_field(top, 3)
    cert = _bytes_field(top, 6)
    out: list[QuoteEvidence] = []
    for num, value in top:
        if num != 2:
            continue
        if not isinstance(value, bytes):
            raise FormatError(_PB, "quotes", got="varint", want="tpm.Quote")
        q = _fields(value)
        attest, sig, pcr_msg = _bytes_field(q, 1), _bytes_field(q, 2), _bytes_field(q, 3)
        if attest is None or sig is None or pcr_msg is None:
            raise FormatError(_PB, "quotes[].quote/raw_sig/pcrs", got="missing", want="all")
        p = _fields(pcr_msg)
        hash_ids = [v for n, v in p if n == 1 and isinstance(v, int)]
        try:
            alg = HashAlg(hash_ids[-1]) if hash_ids else None
        except ValueError:
            alg = None
        if alg is None:
            raise FormatError(_PB, "quotes[].pcrs.hash", got=hash_ids, want="a hash id")
        bank: dict[int, bytes] = {}
        for n, entry in p:
            if n != 2:
                continue
            if not isinstance(entry, bytes):
                raise FormatError(_PB, "quotes[].pcrs.pcrs", got="varint", want="map entry")
            kv = _fields(entry)
            keys = [v for k, v in kv if k == 1 and isinstance(v, int)]
            val = _bytes_field(kv, 2)
            bank[keys[-1] if keys else 0] = val or b""
        out.append(QuoteEvidence(attest=attest, signature=TpmtSignature.from_bytes(sig),
                                 pcrs={alg: bank}, ak=ak, event_log=log, ak_cert=cert))
    return out
