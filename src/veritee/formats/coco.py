"""Confidential Containers (CoCo) KBS protocol messages: shapes, names and the binding rule.

The protocol is Trustee's "Request-Challenge-Attestation-Response" (RCAR), documented in
``docs/kbs_attestation_protocol.md`` of github.com/confidential-containers/trustee, with the
message types of the ``kbs-types`` crate (github.com/virtee/kbs-types). This module holds what
both sides need and that involves no key: the protocol version, the TEE names, the JSON form
the binding is computed over, and the SEV-SNP report as attestation-agent serialises it.

Binding rule (protocol 0.4.0, Trustee ``kbs/src/attestation/backend.rs``): the TEE's
report data is ``H(runtime-data)``, zero-padded to the report-data field, where
``runtime-data`` is the JSON object ``{"additional-evidence", "nonce", "tee-pubkey"}`` for the
primary evidence, serialised as serde_json serialises a ``Value``: keys sorted, no spaces,
non-ASCII kept as UTF-8. ``tee-pubkey`` keeps only the members of kbs-types' ``TeePubKey``
(``alg``, ``crv``, ``kty``, ``x``, ``y`` for EC). ``H`` is SHA-384 unless the challenge
selected another. Init-data (a TOML document) is hashed with the algorithm it names, and the
digest must be in SEV-SNP HOSTDATA (32 bytes) or TDX MRCONFIGID (48 bytes), zero-padded or
truncated to the field as Trustee's ``regularize_data`` does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from veritee.errors import FormatError

__all__ = [
    "ADDITIONAL_TEES",
    "HASH_ALGORITHMS",
    "KBS_PROTOCOL_VERSION",
    "KNOWN_TEES",
    "SUPPORTED_TEES",
    "canonical_json",
    "init_data_digest",
    "regularize",
    "runtime_data_digest",
    "snp_report_from_object",
    "snp_report_to_object",
    "tee_pubkey",
]

KBS_PROTOCOL_VERSION = "0.4.0"  # Trustee accepts exactly this version (VersionReq "=0.4.0")
# kbs-types ``Tee`` names (serde lowercase). Only these two are verified here.
SUPPORTED_TEES = ("snp", "tdx")
KNOWN_TEES = frozenset({"snp", "tdx", "sgx", "azsnpvtpm", "aztdxvtpm", "tpm", "cca", "csv",
                        "se", "sev", "hygondcu", "nvidia", "sample", "sampledevice"})
ADDITIONAL_TEES = frozenset({"nvidia", "sampledevice", "hygondcu", "tpm"})
HASH_ALGORITHMS: dict[str, Callable[[bytes], bytes]] = {
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha384": lambda b: hashlib.sha384(b).digest(),
    "sha512": lambda b: hashlib.sha512(b).digest(),
}


def canonical_json(value: object) -> bytes:
    """``value`` as serde_json writes a ``Value`` (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def tee_pubkey(jwk: object) -> dict[str, str]:
    """The ``tee-pubkey`` members kbs-types keeps (EC only); FormatError otherwise."""
    if not isinstance(jwk, Mapping):
        raise FormatError("Attestation", "runtime-data.tee-pubkey", got=type(jwk).__name__,
                          want="a JWK object")
    kty = jwk.get("kty")
    if kty != "EC":
        raise FormatError("Attestation", "runtime-data.tee-pubkey.kty", got=str(kty)[:20],
                          want="EC (ECDH-ES+A256KW; RSA-OAEP-256 keys are not supported)")
    out = {}
    for name in ("alg", "crv", "kty", "x", "y"):
        value = jwk.get(name)
        if not isinstance(value, str) or not value or len(value) > 200:
            raise FormatError("Attestation", f"runtime-data.tee-pubkey.{name}",
                              got=repr(value)[:40], want="a non-empty string")
        out[name] = value
    if out["alg"] != "ECDH-ES+A256KW":
        raise FormatError("Attestation", "runtime-data.tee-pubkey.alg", got=out["alg"][:40],
                          want="ECDH-ES+A256KW")
    return out


def regularize(data: bytes, size: int) -> bytes:
    """Zero-pad or truncate ``data`` to ``size`` bytes (Trustee's ``regularize_data``)."""
    return data[:size].ljust(size, b"\0")


def runtime_data_digest(nonce: str, pubkey: Mapping[str, str], additional_evidence: str,
                        algorithm: str = "sha384") -> bytes:
    """The 64-byte report data the primary evidence must carry (see the module docstring)."""
    body = canonical_json({"additional-evidence": additional_evidence, "nonce": nonce,
                           "tee-pubkey": dict(pubkey)})
    return regularize(HASH_ALGORITHMS[algorithm](body), 64)


def init_data_digest(init_data: object) -> bytes:
    """The digest of a kbs-types ``InitData`` ``{format: "toml", body}`` (FormatError if bad).

    The body is hashed as sent; the algorithm is the TOML's own ``algorithm`` key (the CoCo
    initdata specification), one of sha256, sha384, sha512.
    """
    if not isinstance(init_data, Mapping) or set(init_data) - {"format", "body"}:
        raise FormatError("Attestation", "init-data", got=type(init_data).__name__,
                          want="{format, body}")
    if init_data.get("format") != "toml":
        raise FormatError("Attestation", "init-data.format",
                          got=repr(init_data.get("format"))[:40], want="toml")
    body = init_data.get("body")
    if not isinstance(body, str) or len(body) > 64 << 10:
        raise FormatError("Attestation", "init-data.body", got=type(body).__name__,
                          want="a TOML document of at most 64 KiB")
    try:
        doc = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise FormatError("Attestation", "init-data.body", got=str(exc)[:80],
                          want="valid TOML") from None
    algorithm = doc.get("algorithm")
    if algorithm not in HASH_ALGORITHMS:
        raise FormatError("Attestation", "init-data.body.algorithm", got=repr(algorithm)[:40],
                          want="sha256, sha384 or sha512")
    return HASH_ALGORITHMS[str(algorithm)](body.encode())


# The SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI 56860, Table 23) as the ``sev`` crate's serde
# derive writes it inside attestation-agent's ``SnpEvidence.attestation_report``: one member
# per field in ABI order, byte arrays as arrays of integers, TCB versions as objects.
# (name, offset, size, kind): kind "u" little-endian integer, "b" bytes, "tcb", "sig".
_SNP_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("version", 0x00, 4, "u"), ("guest_svn", 0x04, 4, "u"), ("policy", 0x08, 8, "u"),
    ("family_id", 0x10, 16, "b"), ("image_id", 0x20, 16, "b"), ("vmpl", 0x30, 4, "u"),
    ("sig_algo", 0x34, 4, "u"), ("current_tcb", 0x38, 8, "tcb"), ("plat_info", 0x40, 8, "u"),
    ("_author_key_en", 0x48, 4, "u"), ("_reserved_0", 0x4C, 4, "u"),
    ("report_data", 0x50, 64, "b"), ("measurement", 0x90, 48, "b"),
    ("host_data", 0xC0, 32, "b"), ("id_key_digest", 0xE0, 48, "b"),
    ("author_key_digest", 0x110, 48, "b"), ("report_id", 0x140, 32, "b"),
    ("report_id_ma", 0x160, 32, "b"), ("reported_tcb", 0x180, 8, "tcb"),
    ("_reserved_1", 0x188, 24, "b"), ("chip_id", 0x1A0, 64, "b"),
    ("committed_tcb", 0x1E0, 8, "tcb"), ("current_build", 0x1E8, 1, "u"),
    ("current_minor", 0x1E9, 1, "u"), ("current_major", 0x1EA, 1, "u"),
    ("_reserved_2", 0x1EB, 1, "u"), ("committed_build", 0x1EC, 1, "u"),
    ("committed_minor", 0x1ED, 1, "u"), ("committed_major", 0x1EE, 1, "u"),
    ("_reserved_3", 0x1EF, 1, "u"), ("launch_tcb", 0x1F0, 8, "tcb"),
    ("_reserved_4", 0x1F8, 168, "b"), ("signature", 0x2A0, 512, "sig"),
)
_SNP_REPORT_SIZE = 0x4A0
# TCB_VERSION (Table 3, Milan/Genoa layout): byte 0 boot loader, 1 TEE, 2-5 reserved,
# 6 SNP, 7 microcode. Signature (Table 135): R (72 bytes), S (72), reserved (368).
_TCB = (("bootloader", 0, 1), ("tee", 1, 1), ("_reserved", 2, 4), ("snp", 6, 1),
        ("microcode", 7, 1))
_SIG = (("r", 0, 72), ("s", 72, 72), ("_reserved", 144, 368))
# Report version 3 and later put the CPUID family, model and stepping in bytes 0x188-0x18A
# of what version 2 reserved; newer ``sev`` crates name them.
_CPUID = (("cpuid_fam_id", 0x188), ("cpuid_mod_id", 0x189), ("cpuid_step", 0x18A))


def _bytes_member(value: object, where: str, size: int) -> bytes:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise FormatError("SnpEvidence", where, got="invalid base64",
                              want=f"{size} bytes") from None
    elif isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool)
                                         and 0 <= b <= 255 for b in value):
        raw = bytes(value)
    else:
        raise FormatError("SnpEvidence", where, got=type(value).__name__,
                          want=f"{size} bytes (an array of integers or base64)")
    if len(raw) != size:
        raise FormatError("SnpEvidence", where, got=f"{len(raw)} bytes", want=f"{size} bytes")
    return raw


def _int_member(value: object, where: str, size: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise FormatError("SnpEvidence", where, got=repr(value)[:40],
                          want=f"an unsigned {8 * size}-bit integer")
    return value.to_bytes(size, "little")


def _sub(value: object, where: str, parts: tuple[tuple[str, int, int], ...]) -> bytes:
    if not isinstance(value, Mapping):
        raise FormatError("SnpEvidence", where, got=type(value).__name__, want="an object")
    out = b""
    for name, _off, size in parts:
        if name not in value:
            if not name.startswith("_"):
                raise FormatError("SnpEvidence", f"{where}.{name}", got="absent",
                                  want="present")
            out += bytes(size)
        elif size == 1:
            out += _int_member(value[name], f"{where}.{name}", 1)
        else:
            out += _bytes_member(value[name], f"{where}.{name}", size)
    return out


def snp_report_from_object(report: object) -> bytes:
    """The 1184 report bytes from attestation-agent's ``attestation_report`` member.

    Accepted forms: the ``sev`` crate object (fields above), an array of 1184 integers, or
    base64 of the 1184 bytes. Reserved members may be omitted (zero). Raises FormatError.
    """
    if not isinstance(report, Mapping):
        return _bytes_member(report, "attestation_report", _SNP_REPORT_SIZE)
    out = bytearray(_SNP_REPORT_SIZE)
    for name, off, size, kind in _SNP_FIELDS:
        where = f"attestation_report.{name}"
        if name not in report:
            if name.startswith("_"):
                continue
            raise FormatError("SnpEvidence", where, got="absent", want="present")
        value = report[name]
        if kind == "u":
            out[off:off + size] = _int_member(value, where, size)
        elif kind == "b":
            out[off:off + size] = _bytes_member(value, where, size)
        else:
            out[off:off + size] = _sub(value, where, _TCB if kind == "tcb" else _SIG)
    for name, off in _CPUID:
        if name in report:
            out[off:off + 1] = _int_member(report[name], f"attestation_report.{name}", 1)
    return bytes(out)


def snp_report_to_object(raw: bytes) -> dict[str, Any]:
    """Inverse of :func:`snp_report_from_object` (object form), for an attester."""
    if len(raw) != _SNP_REPORT_SIZE:
        raise FormatError("ATTESTATION_REPORT", "<size>", got=len(raw), want=_SNP_REPORT_SIZE)
    obj: dict[str, Any] = {}
    for name, off, size, kind in _SNP_FIELDS:
        chunk = raw[off:off + size]
        if kind == "u":
            obj[name] = int.from_bytes(chunk, "little")
        elif kind == "b":
            obj[name] = list(chunk)
        else:
            parts = _TCB if kind == "tcb" else _SIG
            obj[name] = {n: (chunk[o] if s == 1 else list(chunk[o:o + s]))
                         for n, o, s in parts}
    obj.update({name: raw[off] for name, off in _CPUID})
    return obj
