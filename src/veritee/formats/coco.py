"""Confidential Containers (CoCo) KBS protocol messages: versions, shapes, and the binding rule.

The protocol is Trustee's "Request-Challenge-Attestation-Response" (RCAR), documented in
``docs/kbs_attestation_protocol.md`` of github.com/confidential-containers/trustee, with the
message types of the ``kbs-types`` crate (github.com/virtee/kbs-types) and the guest side of
attestation-agent's ``kbs_protocol`` crate (github.com/confidential-containers/guest-components).
This module holds what both sides need and that involves no key and no I/O: the protocol
versions and what each one sends, the TEE names and their evidence shapes, the JSON form the
binding is computed over, and the SEV-SNP report as attestation-agent serialises it. Every
value is parsed with the bounded decoders of :mod:`veritee._decode`; bad input raises
:class:`~veritee.errors.FormatError` naming the message and field.

Protocol versions (Trustee's KBS accepts exactly one, ``VersionReq "=x.y.z"``; this module
accepts each of these, and the session remembers which one the guest spoke):

========= ======================================================================================
``0.1.0`` ``Attestation {tee-pubkey, tee-evidence}``, ``tee-evidence`` a *JSON string* of the
          attester's evidence, ``tee-pubkey`` an RSA JWK ``{kty, alg: RSA1_5, n, e}``; the
          Challenge's ``extra-params`` is a string (kbs-types 0.5 types it ``String``); the
          Response JWE carries an ``aad`` member (Trustee ``kbs/src/jwe.rs`` before #597).
``0.1.1`` as 0.1.0 but ``tee-evidence`` is the evidence JSON value itself (Trustee #445).
``0.2.0`` Response JWE per RFC 7516 (no ``aad`` member), TEE keys ``ECDH-ES+A256KW`` (EC) and
          ``RSA-OAEP-256`` beside the deprecated ``RSA1_5`` (Trustee #597); hash algorithm
          negotiation through ``extra-params`` (``supported-hash-algorithms`` ->
          ``selected-hash-algorithm``).
``0.3.0`` composite evidence: ``tee-evidence {primary_evidence, additional_evidence}``, the
          additional evidence a JSON string ``{tee: evidence}`` bound into the primary's
          runtime data (guest-components #991, Trustee #786); ``tee-pubkey`` still top-level.
``0.4.0`` ``Attestation {init-data?, runtime-data {nonce, tee-pubkey}, tee-evidence
          {primary_evidence, additional_evidence}}`` (Trustee #841, kbs-types
          ``RuntimeData``/``InitData``/``CompositeEvidence``).
========= ======================================================================================

Binding rule (Trustee ``kbs/src/attestation/backend.rs``, the CoCo AS ``parse_runtime_data``):
the TEE carries ``H(runtime-data)`` where ``runtime-data`` is the JSON object ``{"nonce",
"tee-pubkey"}`` (plus ``"additional-evidence"``, the additional-evidence string, for the primary
evidence from 0.3.0 on), serialised canonically (RFC 8785 / serde_json: keys sorted at every
depth, no spaces, UTF-8). ``tee-pubkey`` keeps only the kbs-types ``TeePubKey`` members (EC:
``alg, crv, kty, x, y``; RSA: ``alg, e, kty, n``). ``H`` is SHA-384 unless the challenge
selected another. Each TEE carries the digest in its own field, zero-padded or truncated to the
field's size as Trustee's ``regularize_data`` does (:data:`TEE_SHAPES` says where). Init-data
(0.4.0, a TOML document) is hashed with the algorithm it names and must be in SEV-SNP HOSTDATA
(32 bytes) or TDX MRCONFIGID (48 bytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from veritee._decode import MAX_JSON_DEPTH, decode_base64, load_json
from veritee.errors import FormatError

__all__ = [
    "HASH_ALGORITHMS",
    "KBS_PROTOCOL_VERSION",
    "KNOWN_TEES",
    "PROTOCOL_VERSIONS",
    "TEE_SHAPES",
    "AttestationMessage",
    "CocoEvidence",
    "ProtocolVersion",
    "TeeShape",
    "additional_evidence",
    "canonical_json",
    "device_evidence",
    "init_data_digest",
    "parse_attestation",
    "primary_evidence",
    "regularize",
    "runtime_data",
    "runtime_data_digest",
    "snp_report_from_object",
    "snp_report_to_object",
    "tee_pubkey",
    "tee_shape",
]

KBS_PROTOCOL_VERSION = "0.4.0"  # what current guest components send (and this client speaks)
HASH_ALGORITHMS: dict[str, Callable[[bytes], bytes]] = {
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha384": lambda b: hashlib.sha384(b).digest(),
    "sha512": lambda b: hashlib.sha512(b).digest(),
}
_MAX_MESSAGE = 4 << 20  # an Attestation: a TDX quote with its chain ~8 KiB, NVIDIA ~64 KiB


@dataclass(frozen=True)
class ProtocolVersion:
    """What one KBS protocol version sends (see the table in the module docstring)."""

    name: str
    evidence_as_string: bool  # 0.1.0: tee-evidence is a JSON string
    composite: bool  # 0.3.0+: tee-evidence {primary_evidence, additional_evidence}
    runtime_data_member: bool  # 0.4.0: runtime-data {nonce, tee-pubkey} and init-data
    key_algorithms: tuple[str, ...]  # tee-pubkey algorithms the version's guests send
    legacy_aad: bool  # before 0.2.0: the Response JWE carries an aad member
    challenge_extra_string: bool  # before 0.2.0: Challenge.extra-params is a string


_RSA1_5, _OAEP256, _ECDH = "RSA1_5", "RSA-OAEP-256", "ECDH-ES+A256KW"
PROTOCOL_VERSIONS: Mapping[str, ProtocolVersion] = {v.name: v for v in (
    ProtocolVersion("0.1.0", True, False, False, (_RSA1_5,), True, True),
    ProtocolVersion("0.1.1", False, False, False, (_RSA1_5,), True, True),
    ProtocolVersion("0.2.0", False, False, False, (_ECDH, _OAEP256, _RSA1_5), False, False),
    ProtocolVersion("0.3.0", False, True, False, (_ECDH, _OAEP256, _RSA1_5), False, False),
    ProtocolVersion("0.4.0", False, True, True, (_ECDH, _OAEP256, _RSA1_5), False, False),
)}


def canonical_json(value: object) -> bytes:
    """``value`` as serde_json writes a ``Value`` (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _string(value: object, structure: str, field: str, *, limit: int = 1024) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise FormatError(structure, field, got=repr(value)[:40],
                          want=f"a non-empty string of at most {limit} characters")
    return value


def tee_pubkey(jwk: object, version: ProtocolVersion | None = None,
               where: str = "tee-pubkey") -> dict[str, str]:
    """The ``tee-pubkey`` members kbs-types keeps: EC ``{alg, crv, kty, x, y}`` or RSA
    ``{alg, e, kty, n}``; FormatError if the key is not one ``version``'s guests send."""
    if not isinstance(jwk, Mapping):
        raise FormatError("Attestation", where, got=type(jwk).__name__, want="a JWK object")
    kty = jwk.get("kty")
    names = {"EC": ("alg", "crv", "kty", "x", "y"), "RSA": ("alg", "e", "kty", "n")}.get(
        str(kty))
    if names is None:
        raise FormatError("Attestation", f"{where}.kty", got=str(kty)[:20],
                          want="EC or RSA (kbs-types TeePubKey)")
    out = {n: _string(jwk.get(n), "Attestation", f"{where}.{n}", limit=2048) for n in names}
    allowed = version.key_algorithms if version is not None else (_ECDH, _OAEP256, _RSA1_5)
    ok = {a for a in allowed if (a == _ECDH) == (kty == "EC")}
    if out["alg"] not in ok:
        raise FormatError("Attestation", f"{where}.alg", got=out["alg"][:40],
                          want=" or ".join(sorted(ok)) or "an RSA key (protocol "
                          f"{version.name if version else '?'} has no EC keys)")
    return out


def regularize(data: bytes, size: int) -> bytes:
    """Zero-pad or truncate ``data`` to ``size`` bytes (Trustee's ``regularize_data``)."""
    return data[:size].ljust(size, b"\0")


def runtime_data(nonce: str, pubkey: Mapping[str, str],
                 additional_evidence: str | None = None) -> dict[str, Any]:
    """The runtime-data object the binding hashes (``additional-evidence`` for a primary
    attester from protocol 0.3.0 on; ``None`` for devices and older versions)."""
    body: dict[str, Any] = {"nonce": nonce, "tee-pubkey": dict(pubkey)}
    if additional_evidence is not None:
        body["additional-evidence"] = additional_evidence
    return body


def runtime_data_digest(nonce: str, pubkey: Mapping[str, str],
                        additional_evidence: str | None = "",
                        algorithm: str = "sha384") -> bytes:
    """``H(runtime-data)`` regularized to 64 bytes (the primary evidence's report data).

    ``additional_evidence=None`` gives the 0.1.x/0.2.0 (and device) form without the
    ``additional-evidence`` member.
    """
    return regularize(HASH_ALGORITHMS[algorithm](canonical_json(
        runtime_data(nonce, pubkey, additional_evidence))), 64)


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


# -- the Attestation message, per version ------------------------------------------------------
@dataclass(frozen=True)
class AttestationMessage:
    """An ``Attestation`` of any version, normalised.

    ``nonce`` is the runtime-data nonce (0.4.0) or ``None`` (older versions carry none: the
    session's is used); ``additional`` is the additional-evidence string (``None`` before
    0.3.0, which has no such member and does not hash one).
    """

    version: ProtocolVersion
    nonce: str | None
    pubkey: dict[str, str]
    primary: Any
    additional: str | None
    init_data: Mapping[str, Any] | None


def _members(obj: object, structure: str, where: str, allowed: set[str],
             required: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FormatError(structure, where, got=type(obj).__name__, want="a JSON object")
    extra = sorted(set(obj) - allowed)
    if extra:
        raise FormatError(structure, f"{where}.{extra[0]}" if where else extra[0],
                          got="present", want=f"only {', '.join(sorted(allowed))}")
    for name in sorted(required):
        if name not in obj:
            raise FormatError(structure, f"{where}.{name}" if where else name, got="absent",
                              want="present")
    return obj


def parse_attestation(raw: bytes, version: ProtocolVersion) -> AttestationMessage:
    """The ``Attestation`` body as ``version`` shapes it; FormatError naming the field."""
    body = load_json(raw, structure="Attestation", max_size=_MAX_MESSAGE)
    if version.runtime_data_member:
        msg = _members(body, "Attestation", "", {"init-data", "runtime-data", "tee-evidence"},
                       {"runtime-data", "tee-evidence"})
        rd = _members(msg["runtime-data"], "Attestation", "runtime-data",
                      {"nonce", "tee-pubkey"}, {"nonce", "tee-pubkey"})
        nonce: str | None = _string(rd["nonce"], "Attestation", "runtime-data.nonce")
        pubkey = tee_pubkey(rd["tee-pubkey"], version, "runtime-data.tee-pubkey")
        init = msg.get("init-data")
        if init is not None and not isinstance(init, dict):
            raise FormatError("Attestation", "init-data", got=type(init).__name__,
                              want="{format, body} or null")
    else:
        msg = _members(body, "Attestation", "", {"tee-pubkey", "tee-evidence"},
                       {"tee-pubkey", "tee-evidence"})
        nonce, init = None, None
        pubkey = tee_pubkey(msg["tee-pubkey"], version)
    evidence = msg["tee-evidence"]
    if version.composite:
        ev = _members(evidence, "Attestation", "tee-evidence",
                      {"primary_evidence", "additional_evidence"},
                      {"primary_evidence", "additional_evidence"})
        additional = ev["additional_evidence"]
        if not isinstance(additional, str) or len(additional) > _MAX_MESSAGE:
            raise FormatError("Attestation", "tee-evidence.additional_evidence",
                              got=type(additional).__name__,
                              want="a string (JSON of {tee: evidence}, or empty)")
        return AttestationMessage(version, nonce, pubkey, ev["primary_evidence"], additional,
                                  init)
    if version.evidence_as_string:
        if not isinstance(evidence, str):
            raise FormatError("Attestation", "tee-evidence", got=type(evidence).__name__,
                              want=f"a JSON string (protocol {version.name})")
        evidence = load_json(evidence, structure="Attestation", max_size=_MAX_MESSAGE)
    return AttestationMessage(version, nonce, pubkey, evidence, None, init)


# -- evidence shapes, per TEE ------------------------------------------------------------------
@dataclass(frozen=True)
class CocoEvidence:
    """One attester's evidence as a veritee scheme takes it: bytes, scheme, attached bytes."""

    tee: str  # the kbs-types name the guest used
    scheme: str  # the veritee scheme name (veritee.schemes)
    data: bytes
    attached: bytes | None = None


@dataclass(frozen=True)
class TeeShape:
    """A kbs-types TEE: its names, the veritee scheme, and where its binding goes."""

    names: tuple[str, ...]
    scheme: str
    convert: Callable[[object, str], tuple[bytes, bytes | None]]
    binding: str  # where the TEE carries the runtime-data digest (docs)
    device: bool = False  # only as additional evidence


def _object(value: object, structure: str) -> dict[str, Any]:
    if isinstance(value, str):
        # Some attesters hand the evidence over as a JSON string.
        value = load_json(value, structure=structure, max_size=_MAX_MESSAGE)
    if not isinstance(value, dict):
        raise FormatError(structure, "<evidence>", got=type(value).__name__,
                          want="a JSON object")
    return value


def _blob(value: object, structure: str, field: str, *, limit: int = 1 << 20) -> bytes:
    """Bytes as serde writes a ``Vec<u8>`` (an integer array) or as base64 text."""
    if isinstance(value, str):
        raw = decode_base64(value, structure=structure, field=field)
    elif isinstance(value, list) and len(value) <= limit and all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
        raw = bytes(value)
    else:
        raise FormatError(structure, field, got=type(value).__name__,
                          want="bytes (an array of integers or base64)")
    if not raw or len(raw) > limit:
        raise FormatError(structure, field, got=f"{len(raw)} bytes",
                          want=f"1 to {limit} bytes")
    return raw


def _snp(value: object, tee: str) -> tuple[bytes, bytes | None]:
    # attestation-agent SnpEvidence: {attestation_report, cert_chain?: [{cert_type, data}]}
    obj = _object(value, "SnpEvidence")
    report = snp_report_from_object(obj.get("attestation_report"))
    chain = obj.get("cert_chain")
    if chain is None:
        return report, None
    if not isinstance(chain, list) or len(chain) > 8:
        raise FormatError("SnpEvidence", "cert_chain", got=type(chain).__name__,
                          want="a list of at most 8 {cert_type, data}")
    from veritee.formats.sevsnp import CertTable

    items: dict[str, bytes] = {}
    for i, entry in enumerate(chain):
        kind = entry.get("cert_type") if isinstance(entry, dict) else None
        if not isinstance(kind, str) or kind.upper() not in ("ARK", "ASK", "VCEK", "VLEK",
                                                             "CRL"):
            raise FormatError("SnpEvidence", f"cert_chain[{i}].cert_type", got=repr(kind)[:30],
                              want="ARK, ASK, VCEK, VLEK or CRL")
        items[kind.upper()] = _blob(entry.get("data"), "SnpEvidence", f"cert_chain[{i}].data",
                                    limit=1 << 16)
    return report, CertTable.build(items).to_bytes()


def _dcap_quote(structure: str) -> Callable[[object, str], tuple[bytes, bytes | None]]:
    def convert(value: object, tee: str) -> tuple[bytes, bytes | None]:
        # attestation-agent TdxEvidence {cc_eventlog?, quote, aa_eventlog?} and SgxEvidence
        # {quote}: the quote is base64 (Intel DCAP quote, header version 3/4/5).
        # Other members are ignored, as Trustee's serde types ignore them (attesters add
        # members across releases); none of them is signed or verified here.
        obj = _object(value, structure)
        if "quote" not in obj:
            raise FormatError(structure, "quote", got="absent", want="present")
        quote = decode_base64(_string(obj["quote"], structure, "quote", limit=1 << 20),
                              structure=structure, field="quote")
        version = int.from_bytes(quote[0:2], "little") if len(quote) >= 2 else 0
        want = (4, 5) if structure == "TdxEvidence" else (3,)
        if len(quote) < 48 or version not in want:
            raise FormatError(structure, "quote", got=f"{len(quote)} bytes, header version "
                              f"{version}", want=f"an Intel DCAP quote (version "
                              f"{' or '.join(map(str, want))})")
        for log in ("cc_eventlog", "aa_eventlog"):
            if obj.get(log) is not None and not isinstance(obj[log], str):
                raise FormatError(structure, log, got=type(obj[log]).__name__,
                                  want="a string or null")
        return quote, None
    return convert


def _json_container(structure: str, required: tuple[tuple[str, ...], ...]
                    ) -> Callable[[object, str], tuple[bytes, bytes | None]]:
    def convert(value: object, tee: str) -> tuple[bytes, bytes | None]:
        # Trustee's verifier takes these JSON documents as they are; so does the veritee
        # scheme (its parser names any bad field), so only the container is checked here:
        # an object with one member of each group (layouts renamed members across versions).
        obj = _object(value, structure)
        for group in required:
            if not any(name in obj for name in group):
                raise FormatError(structure, group[0], got="absent",
                                  want=f"present (or {', '.join(group[1:])})" if group[1:]
                                  else "present")
        return canonical_json(obj), None
    return convert


def _cca(value: object, tee: str) -> tuple[bytes, bytes | None]:
    # attestation-agent CcaEvidence {token}: the CCA attestation token (CBOR, a tagged
    # collection of the platform and realm tokens), serde bytes or base64.
    obj = _object(value, "CcaEvidence")
    if "token" not in obj:
        raise FormatError("CcaEvidence", "token", got="absent", want="the CCA token")
    return _blob(obj["token"], "CcaEvidence", "token", limit=64 << 10), None


def _nvidia(value: object, tee: str) -> tuple[bytes, bytes | None]:
    # attestation-agent's NVIDIA device evidence {device_evidence_list: [{evidence,
    # certificate, ...}]}: per device the SPDM GET_MEASUREMENTS transcript (base64) and its
    # certificate chain (base64 of the PEM, leaf first), what the nvidia scheme verifies.
    # One device per kbs-types entry here: every part is bound and appraised on its own.
    obj = _object(value, "NvidiaEvidence")
    field = f"additional_evidence.{tee[:20]}.device_evidence_list"
    devices = obj.get("device_evidence_list")
    if not isinstance(devices, list) or len(devices) != 1 or not isinstance(devices[0], dict):
        got = f"{len(devices)} devices" if isinstance(devices, list) else type(devices).__name__
        raise FormatError("NvidiaEvidence", field, got=got,
                          want="a list of one {evidence, certificate} device")
    device = devices[0]
    report = _blob(device.get("evidence"), "NvidiaEvidence", f"{field}[0].evidence")
    chain = _blob(device.get("certificate"), "NvidiaEvidence", f"{field}[0].certificate")
    return report, chain


TEE_SHAPES: tuple[TeeShape, ...] = (
    TeeShape(("snp",), "sevsnp", _snp, "REPORT_DATA (64 bytes; SEV-SNP ABI 56860 Table 23)"),
    TeeShape(("tdx",), "tdx", _dcap_quote("TdxEvidence"),
             "REPORTDATA of the TD report (64 bytes)"),
    TeeShape(("sgx",), "sgx", _dcap_quote("SgxEvidence"),
             "REPORTDATA of the enclave report (64 bytes)"),
    TeeShape(("az-snp-vtpm", "azsnpvtpm"), "az-snp-vtpm", _json_container(
             "AzSnpVtpmEvidence", (("quote", "tpm_quote"), ("report", "hcl_report"))),
             "the vTPM quote's nonce (TPMS_ATTEST.extraData); the HCL report binds the AK"),
    TeeShape(("az-tdx-vtpm", "aztdxvtpm"), "az-tdx-vtpm", _json_container(
             "AzTdxVtpmEvidence", (("quote", "tpm_quote"), ("report", "hcl_report"),
                                   ("td_quote",))),
             "the vTPM quote's nonce (TPMS_ATTEST.extraData); the HCL report binds the AK"),
    TeeShape(("tpm",), "tpm", _json_container("TpmEvidence", (("tpm_quote", "quote"),)),
             "TPM2_Quote qualifying data (TPMS_ATTEST.extraData)"),
    TeeShape(("cca",), "cca", _cca, "the realm token's challenge (64 bytes)"),
    TeeShape(("nvidia",), "nvidia", _nvidia,
             "the SPDM GET_MEASUREMENTS requester nonce (32 bytes)", device=True),
)
KNOWN_TEES = frozenset({"snp", "tdx", "sgx", "azsnpvtpm", "aztdxvtpm", "az-snp-vtpm",
                        "az-tdx-vtpm", "tpm", "cca", "csv", "se", "sev", "hygondcu", "dpu",
                        "nvidia", "sample", "sampledevice"})
"""Every kbs-types ``Tee`` name (older lowercase and newer hyphenated Azure spellings)."""


def tee_shape(tee: str) -> TeeShape | None:
    """The shape of kbs-types TEE ``tee``, or ``None`` when veritee has none for it."""
    return next((s for s in TEE_SHAPES if tee in s.names), None)


def primary_evidence(tee: str, evidence: object) -> CocoEvidence:
    """The primary attester's evidence as a veritee evidence part (FormatError if bad)."""
    shape = tee_shape(tee)
    if shape is None or shape.device:
        raise FormatError("Attestation", "tee", got=tee[:20], want="a CPU TEE with a shape")
    data, attached = shape.convert(evidence, tee)
    return CocoEvidence(tee, shape.scheme, data, attached)


def additional_evidence(text: str) -> list[tuple[str, object]]:
    """The ``{tee: evidence}`` map of an additional-evidence string, in the sender's order.

    A value may be the evidence or ``[class, evidence]`` (kbs-types documents the map as
    ``Tee -> (TEE class, TEE evidence)``). An empty string is no devices.
    """
    if not text.strip():
        return []
    devices = load_json(text, structure="Attestation", max_size=_MAX_MESSAGE,
                        max_depth=MAX_JSON_DEPTH)
    if not isinstance(devices, dict) or not devices or len(devices) > 16:
        raise FormatError("Attestation", "tee-evidence.additional_evidence",
                          got=type(devices).__name__, want="a JSON object of 1 to 16 "
                          "{tee: evidence} members")
    out: list[tuple[str, object]] = []
    for tee, value in devices.items():
        pair = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
        out.append((str(tee)[:40], value[1] if pair else value))
    return out


def device_evidence(tee: str, evidence: object) -> CocoEvidence:
    """One additional (device or second CPU) attester's evidence as a veritee part."""
    shape = tee_shape(tee)
    if shape is None:
        raise FormatError("Attestation", f"additional_evidence.{tee[:20]}", got="unknown TEE",
                          want="a kbs-types TEE veritee has a shape for")
    data, attached = shape.convert(evidence, tee)
    return CocoEvidence(tee, shape.scheme, data, attached)


# The SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI 56860, Table 23) as the ``sev`` crate's serde
# derive writes it inside attestation-agent's ``SnpEvidence.attestation_report``: one member
# per field in ABI order, byte arrays as arrays of integers, TCB versions as objects. Checked
# against Trustee's recorded e2e evidence (attestation-service/tests/e2e/evidence.json, a
# Genoa v3 report: ``key_info``, ``current``/``committed`` version objects, TCB objects with
# ``fmc``); the older spelling (``current_build`` ...) is read too.
# (name, offset, size, kind): kind "u" little-endian integer, "b" bytes, "tcb", "sig", "ver".
_SNP_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("version", 0x00, 4, "u"), ("guest_svn", 0x04, 4, "u"), ("policy", 0x08, 8, "u"),
    ("family_id", 0x10, 16, "b"), ("image_id", 0x20, 16, "b"), ("vmpl", 0x30, 4, "u"),
    ("sig_algo", 0x34, 4, "u"), ("current_tcb", 0x38, 8, "tcb"), ("plat_info", 0x40, 8, "u"),
    # KEY_INFO (author key enabled, mask chip key, signing key), the older crates'
    # ``_author_key_en``; 0x4C is reserved.
    ("key_info", 0x48, 4, "u"), ("_reserved_0", 0x4C, 4, "u"),
    ("report_data", 0x50, 64, "b"), ("measurement", 0x90, 48, "b"),
    ("host_data", 0xC0, 32, "b"), ("id_key_digest", 0xE0, 48, "b"),
    ("author_key_digest", 0x110, 48, "b"), ("report_id", 0x140, 32, "b"),
    ("report_id_ma", 0x160, 32, "b"), ("reported_tcb", 0x180, 8, "tcb"),
    ("_reserved_1", 0x188, 24, "b"), ("chip_id", 0x1A0, 64, "b"),
    ("committed_tcb", 0x1E0, 8, "tcb"), ("current", 0x1E8, 4, "ver"),
    ("committed", 0x1EC, 4, "ver"), ("launch_tcb", 0x1F0, 8, "tcb"),
    ("_reserved_4", 0x1F8, 168, "b"), ("signature", 0x2A0, 512, "sig"),
)
_SNP_REPORT_SIZE = 0x4A0
# Older spellings of members the table names differently.
_ALIASES = {"key_info": "_author_key_en"}
# CURRENT/COMMITTED (Table 23): build, minor, major, reserved - as one object
# {major, minor, build} or, in older crates, three members ``current_build`` ...
_VER = (("build", 0), ("minor", 1), ("major", 2))
# TCB_VERSION (Table 3): Milan/Genoa byte 0 boot loader, 1 TEE, 2-5 reserved, 6 SNP,
# 7 microcode; Turin (``fmc`` set) byte 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 4-6 reserved,
# 7 microcode. Signature (Table 135): R (72 bytes), S (72), reserved (368).
_TCB = (("bootloader", 0, 1), ("tee", 1, 1), ("_reserved", 2, 4), ("snp", 6, 1),
        ("microcode", 7, 1))
_TCB_TURIN = (("fmc", 0, 1), ("bootloader", 1, 1), ("tee", 2, 1), ("snp", 3, 1),
              ("_reserved", 4, 3), ("microcode", 7, 1))
_SIG = (("r", 0, 72), ("s", 72, 72), ("_reserved", 144, 368))
# Report version 3 and later put the CPUID family, model and stepping in bytes 0x188-0x18A
# of what version 2 reserved; version 5 the mitigation vectors in 0x1F8-0x207 (ABI 1.58).
_CPUID = (("cpuid_fam_id", 0x188), ("cpuid_mod_id", 0x189), ("cpuid_step", 0x18A))
_MIT = (("launch_mit_vector", 0x1F8), ("current_mit_vector", 0x200))
_TURIN_FAMILY = 0x1A


def _bytes_member(value: object, where: str, size: int) -> bytes:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise FormatError("SnpEvidence", where, got="invalid base64",
                              want=f"{size} bytes") from None
    elif isinstance(value, list) and len(value) <= 4 * size and all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
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


def _tcb(value: object, where: str) -> bytes:
    turin = isinstance(value, Mapping) and value.get("fmc") is not None
    return _sub(value, where, _TCB_TURIN if turin else _TCB)


def _version(report: Mapping[str, Any], name: str, where: str) -> bytes:
    """CURRENT/COMMITTED as an object, or as the older crates' three members."""
    if name in report:
        obj = report[name]
        if not isinstance(obj, Mapping):
            raise FormatError("SnpEvidence", where, got=type(obj).__name__,
                              want="{major, minor, build}")
        found = {part: (obj.get(part), f"{where}.{part}") for part, _ in _VER}
    else:
        found = {part: (report.get(f"{name}_{part}"), f"attestation_report.{name}_{part}")
                 for part, _ in _VER}
    out = bytearray(4)
    for part, at in _VER:
        value, field = found[part]
        if value is None:
            raise FormatError("SnpEvidence", field, got="absent", want="present")
        out[at:at + 1] = _int_member(value, field, 1)
    return bytes(out)


def snp_report_from_object(report: object) -> bytes:
    """The 1184 report bytes from attestation-agent's ``attestation_report`` member.

    Accepted forms: the ``sev`` crate object (fields above, current or older spelling), an
    array of 1184 integers, or base64 of the 1184 bytes. Reserved members may be omitted
    (zero). Raises FormatError.
    """
    if not isinstance(report, Mapping):
        return _bytes_member(report, "attestation_report", _SNP_REPORT_SIZE)
    out = bytearray(_SNP_REPORT_SIZE)
    for name, off, size, kind in _SNP_FIELDS:
        where = f"attestation_report.{name}"
        if kind == "ver":
            out[off:off + size] = _version(report, name, where)
            continue
        key = name if name in report else _ALIASES.get(name, name)
        if key not in report:
            if name.startswith("_") or name in _ALIASES:
                continue
            raise FormatError("SnpEvidence", where, got="absent", want="present")
        value = report[key]
        if kind == "u":
            out[off:off + size] = _int_member(value, where, size)
        elif kind == "b":
            out[off:off + size] = _bytes_member(value, where, size)
        elif kind == "tcb":
            out[off:off + size] = _tcb(value, where)
        else:
            out[off:off + size] = _sub(value, where, _SIG)
    for name, off in _CPUID:
        if name in report:
            out[off:off + 1] = _int_member(report[name], f"attestation_report.{name}", 1)
    for name, off in _MIT:
        if report.get(name) is not None:
            out[off:off + 8] = _int_member(report[name], f"attestation_report.{name}", 8)
    return bytes(out)


def snp_report_to_object(raw: bytes) -> dict[str, Any]:
    """Inverse of :func:`snp_report_from_object`, in the current ``sev`` crate's form."""
    if len(raw) != _SNP_REPORT_SIZE:
        raise FormatError("ATTESTATION_REPORT", "<size>", got=len(raw), want=_SNP_REPORT_SIZE)
    version = int.from_bytes(raw[0:4], "little")
    turin = version >= 3 and raw[0x188] == _TURIN_FAMILY
    # What is still reserved once the named v3 (CPUID) and v5 (mitigation) fields are out.
    reserved = bytearray(raw)
    if version >= 3:
        reserved[0x188:0x18B] = bytes(3)
    if version >= 5:
        reserved[0x1F8:0x208] = bytes(16)
    obj: dict[str, Any] = {}
    for name, off, size, kind in _SNP_FIELDS:
        chunk = raw[off:off + size]
        if name.startswith("_") and not any(reserved[off:off + size]):
            continue  # the crate has no reserved members; zero ones are left out
        if kind == "u":
            obj[name] = int.from_bytes(chunk, "little")
        elif kind == "b":
            obj[name] = list(chunk)
        elif kind == "ver":
            obj[name] = {part: chunk[at] for part, at in _VER}
        else:
            parts = _SIG if kind == "sig" else _TCB_TURIN if turin else _TCB
            sub: dict[str, Any] = {"fmc": None} if kind == "tcb" and not turin else {}
            sub.update({n: (chunk[o] if s == 1 else list(chunk[o:o + s])) for n, o, s in parts
                        if not (n.startswith("_") and not any(chunk[o:o + s]))})
            obj[name] = sub
    obj.update({name: raw[off] for name, off in _CPUID})
    if version >= 5:
        obj.update({name: int.from_bytes(raw[off:off + 8], "little") for name, off in _MIT})
    return obj
