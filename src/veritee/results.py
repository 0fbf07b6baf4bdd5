"""Attestation results: an :class:`~veritee.policy.Appraisal` -> EAR claims -> a signed JWT.

EAR ("EAT Attestation Results", draft-ietf-rats-ear) is the result format: a JWT whose claims
carry, per appraised sub-module, a status (one of the AR4SI trustworthiness tiers), an AR4SI
trustworthiness vector (draft-ietf-rats-ar4si, section 2.3), the appraisal policy id, and
here also the verified claims and a per-check trace. This module only *encodes*: it never
decides acceptance. The vector is derived mechanically from findings the policy layer already
produced (a failed ``sevsnp.tcb.*`` check becomes ``hardware = 32``), so the relying party sees
the same verdict the verifier reached, in the vocabulary of AR4SI. A claim is affirming only
when the check behind it ran and passed; one nothing checked is 0 ("no claim"), and when the
policy lists it in ``required_claims`` the status is at best ``none`` (docs/policy.md, "Trust
vector").

Claim set (JSON serialisation, draft-ietf-rats-ear section 3)::

    eat_profile         "tag:github.com,2023:veraison/ear"
    iat, exp, jti, iss  RFC 7519 registered claims; exp makes the token short-lived
    eat_nonce           the verifier's challenge (base64url), RFC 9711 / EAT
    ear.verifier-id     {"build": "veritee <version>", "developer": "veritee"}
    cnf                 {"jwk": <the TEE's ephemeral public key>}  (RFC 7800 proof-of-possession:
                        the key the verifier saw bound into REPORT_DATA)
    submods.<tee>       ear.status, ear.trustworthiness-vector, ear.appraisal-policy-id,
                        veritee.verified-claims, veritee.trace, veritee.failures

Signing is ES256 or ES384 (RFC 7518 section 3.4) through joserfc. :func:`verify_ear` is what a
relying party runs offline in the passport model: signature against the verifier's published
JWKS, ``exp``/``iat``/``iss``, profile, and it hands back the decoded result.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from veritee._decode import b64url
from veritee._decode import b64url_canonical as _unb64url
from veritee.crypto.kbs_jwe import ec_public_key, rsa_public_key
from veritee.errors import FormatError, VerificationError
from veritee.findings import Finding, Outcome, jsonable
from veritee.policy import Appraisal

__all__ = [
    "EAR_PROFILE",
    "MAX_SUBMODS",
    "SIGNING_ALGORITHMS",
    "TIERS",
    "UNMAPPED_VECTOR",
    "EarKeys",
    "EarResult",
    "VectorRules",
    "binding_identity",
    "composite_ear_claims",
    "ear_claims",
    "ear_status",
    "failed",
    "identity_from_findings",
    "outcome",
    "public_jwk",
    "sign_ear",
    "submod_names",
    "tier",
    "trust_vector",
    "vector_from_rules",
    "verify_ear",
    "worst_status",
]

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
"""The EAR profile identifier (draft-ietf-rats-ear, "EAR profile")."""

SIGNING_ALGORITHMS: Mapping[str, type[ec.EllipticCurve]] = {"ES256": ec.SECP256R1,
                                                            "ES384": ec.SECP384R1}
"""JWS algorithms a result may be signed with, and the curve each requires."""

TIERS = ("none", "affirming", "warning", "contraindicated")
"""AR4SI trustworthiness tiers from best-informed to worst (section 2.3.2)."""

# AR4SI section 2.3.4 values used below (a claim's tier is set by its range, see :func:`tier`).
NO_CLAIM = 0
AFFIRMING = 2
APPROVED_BOOT = 3  # executables: "only a recognized genuine set of approved executables have
#                    been loaded during the boot process" - what an SNP launch digest proves
WARNING_UNSAFE = 32  # hardware: known vulnerabilities; configuration: unsafe/not approved
UNRECOGNIZED_RUNTIME = 33  # executables: not recognized
CONTRAINDICATED = 96
NOT_RECOGNIZED = 97  # instance-identity / hardware: not recognized though it should be
CRYPTO_FAILED = 99  # "cryptographic validation of the Evidence has failed"

# Which findings feed which vector entry is each scheme's business (its ``VECTOR_RULES`` and
# ``trust_vector`` in ``veritee.schemes.<tee>``): this module only supplies the engine. Codes a
# scheme does not list (skips aside) still make the overall status contraindicated, because
# the verdict is the policy layer's, not ours.


@dataclass(frozen=True)
class VectorRules:
    """One scheme's AR4SI mapping: which finding-code prefixes feed which vector entry.

    ``hardware_*``: platform not recognised (97), known vulnerabilities (32), a check the
    policy asked for that could not run (0); ``executables``: a workload check failed (33);
    ``reference``: exact codes whose pass means "a reference measurement matched" (3);
    ``config_contraindicated`` / ``config_unsafe``: configuration 96 / 32; ``config_check``:
    the code whose pass means "this configuration was appraised" (2).
    """

    hardware_unrecognised: tuple[str, ...] = ()
    hardware_unsafe: tuple[str, ...] = ()
    hardware_unknown: tuple[str, ...] = ()
    executables: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    config_contraindicated: tuple[str, ...] = ()
    config_unsafe: tuple[str, ...] = ()
    config_check: str | None = None


def tier(value: int) -> str:
    """The AR4SI tier of one trustworthiness claim (draft-ietf-rats-ar4si, 2.3.2).

    -1..1 carry no claim ("none"), 2..31 affirm, 32..95 warn, 96..127 contraindicate; the
    negative range mirrors the positive one.
    """
    v = abs(value)
    if v <= 1:
        return "none"
    if v <= 31:
        return "affirming"
    if v <= 95:
        return "warning"
    return "contraindicated"


_TIERS = tuple(tier(v) for v in range(-128, 128))


def failed(findings: Iterable[Finding], prefixes: tuple[str, ...]) -> bool:
    """True when a finding whose code starts with one of ``prefixes`` failed."""
    return any(f.outcome is Outcome.FAIL and f.code.startswith(prefixes) for f in findings)


def outcome(findings: Iterable[Finding], code: str) -> Outcome | None:
    """The outcome of the finding ``code`` (``None`` when it did not run)."""
    return next((f.outcome for f in findings if f.code == code), None)


def binding_identity(appraisal: Appraisal) -> int:
    """AR4SI ``instance-identity`` from the front door's binding check
    (``<scheme>.binding.mismatch``): affirming when the evidence carried the verifier's
    challenge, 99 (cryptographic validation failed) when it did not, no claim when no
    challenge was given. A failed platform-identity pin (``<scheme>.chip_id.*``) is 97."""
    return identity_from_findings(appraisal.tee, appraisal.findings)


def identity_from_findings(tee: str, findings: Iterable[Finding]) -> int:
    """:func:`binding_identity` of the policy ``findings`` of a ``tee`` appraisal."""
    bind, chip, own = f"{tee}.binding.mismatch", f"{tee}.chip_id.", f"{tee}.report_data.mismatch"
    result: Outcome | None = None
    report_data: Outcome | None = None
    for f in findings:  # one pass: this runs for every attestation
        if f.outcome is Outcome.FAIL and f.code.startswith(chip):
            return NOT_RECOGNIZED
        if f.code == bind and result is None:
            result = f.outcome
        elif f.code == own and report_data is None:
            report_data = f.outcome
    if result is Outcome.FAIL:
        return CRYPTO_FAILED
    if result is Outcome.PASS:
        return AFFIRMING
    # No binding check ran: a policy's own REPORT_DATA check (the per-TEE APIs) may have.
    if report_data is Outcome.FAIL:
        return CRYPTO_FAILED
    return AFFIRMING if report_data is Outcome.PASS else NO_CLAIM


def vector_from_rules(appraisal: Appraisal, rules: VectorRules, *,
                      hardware: Callable[[tuple[Finding, ...]], int] | None = None,
                      debug: bool = False) -> dict[str, int]:
    """The AR4SI trustworthiness vector of ``appraisal`` under one scheme's ``rules``.

    Computed from what was checked: a claim is affirming only when the check behind it ran
    and passed, a failed check lowers it, and a claim nothing checked is 0 ("no claim").
    ``hardware`` decides the hardware entry once no hardware rule failed (default: no claim);
    ``instance-identity`` comes from :func:`binding_identity`; ``runtime-opaque`` is
    contraindicated when ``debug`` (the TEE's memory is readable by the host), affirming
    otherwise. ``storage-opaque`` and ``sourced-data`` are absent: evidence says nothing of them.
    """
    f = appraisal.findings
    # One pass over the findings (this runs for every attestation): the failed codes and
    # the passed ones; each rule below is then a lookup.
    fails = tuple(x.code for x in f if x.outcome is Outcome.FAIL)
    passes = {x.code for x in f if x.outcome is Outcome.PASS}

    def any_failed(prefixes: tuple[str, ...]) -> bool:
        return bool(prefixes) and any(c.startswith(prefixes) for c in fails)

    if any_failed(rules.hardware_unrecognised):
        hw = NOT_RECOGNIZED
    elif any_failed(rules.hardware_unsafe):
        hw = WARNING_UNSAFE
    elif any_failed(rules.hardware_unknown):
        hw = NO_CLAIM  # checks that did not run although the policy asked: cannot say
    else:
        hw = hardware(f) if hardware is not None else NO_CLAIM
    vector: dict[str, int] = {"hardware": hw, "instance-identity": binding_identity(appraisal)}

    if any_failed(rules.executables):
        vector["executables"] = UNRECOGNIZED_RUNTIME
    elif any(c in passes for c in rules.reference):
        vector["executables"] = APPROVED_BOOT
    else:
        vector["executables"] = NO_CLAIM  # no reference measurement: the verifier cannot say

    if any_failed(rules.config_contraindicated):
        vector["configuration"] = CONTRAINDICATED
    elif any_failed(rules.config_unsafe):
        vector["configuration"] = WARNING_UNSAFE
    elif rules.config_check and rules.config_check in passes:
        vector["configuration"] = AFFIRMING
    else:
        vector["configuration"] = NO_CLAIM

    vector["runtime-opaque"] = CONTRAINDICATED if debug else AFFIRMING
    return vector


# The vector of an appraisal no scheme mapped: one a policy module's ``appraise`` made
# directly, not through ``Scheme.appraise`` / ``veritee.attest`` (which set
# ``Appraisal.vector``). Every AR4SI claim is "no claim" (0), so it affirms nothing: such an
# EAR's status is at best "none" ("contraindicated" when the appraisal rejected), never
# "affirming", whatever the findings. A relying party that wants the TEE's vector verifies
# through the front door; nothing here guesses a scheme from ``appraisal.tee``.
UNMAPPED_VECTOR: Mapping[str, int] = MappingProxyType({
    "instance-identity": NO_CLAIM, "configuration": NO_CLAIM, "executables": NO_CLAIM,
    "hardware": NO_CLAIM, "runtime-opaque": NO_CLAIM})


def trust_vector(appraisal: Appraisal) -> dict[str, int]:
    """The AR4SI trustworthiness vector of ``appraisal``.

    The vector its scheme computed (``Appraisal.vector``, set by ``Scheme.appraise`` and the
    front door); for an appraisal without one (made by a policy module directly),
    :data:`UNMAPPED_VECTOR`, which affirms nothing.
    """
    if appraisal.vector is not None:
        return dict(appraisal.vector)
    return dict(UNMAPPED_VECTOR)


# Worst last: a required claim with no value ranks between affirming and warning.
_STATUS_ORDER = ("affirming", "none", "warning", "contraindicated")


def ear_status(vector: Mapping[str, int], *, accepted: bool = True,
               required: Iterable[str] = ()) -> str:
    """The submodule status: the worst tier in the vector; contraindicated if not accepted.

    A claim named in ``required`` (the policy's ``required_claims``) that is absent or has
    no value ("none") makes the status at best ``none``: the verifier cannot affirm what it
    did not check. Unrequired "none" claims do not lower it. Forcing contraindicated on
    rejection keeps the EAR consistent with the appraisal even for a failed check no vector
    entry covers.
    """
    if not accepted:
        return "contraindicated"
    # AR4SI values are -128..127: their tiers looked up (tier() for anything else).
    table = _TIERS
    tiers = [table[v + 128] if type(v) is int and -128 <= v <= 127 else tier(v)
             for v in vector.values()]
    tiers = [t for t in tiers if t != "none"]
    tiers += ["none" for c in required if tier(vector.get(c, NO_CLAIM)) == "none"]
    if not tiers:
        return "none"
    return max(tiers, key=_STATUS_ORDER.index)


def _trace(appraisal: Appraisal) -> dict[str, str]:
    """``{code: outcome}`` for every check that ran or was skipped, verification first.

    Compact on purpose: the token travels in an HTTP header. The failed checks' got/want go
    in ``veritee.failures``.
    """
    text = _OUTCOME_TEXT
    return {fd.code: text[fd.outcome] for fd in (*appraisal.verification, *appraisal.findings)}


_OUTCOME_TEXT = {o: o.value for o in Outcome}  # a lookup: enum .value is a slow descriptor


def _submod(appraisal: Appraisal) -> dict[str, Any]:
    """One attester's submodule: status, vector, policy id, verified claims, trace, failures."""
    vector = appraisal.vector if appraisal.vector is not None else trust_vector(appraisal)
    return {
        "ear.status": ear_status(vector, accepted=appraisal.accepted,
                                 required=appraisal.required_claims),
        "ear.trustworthiness-vector": vector,
        "ear.appraisal-policy-id": appraisal.policy_id,
        "veritee.verified-claims": jsonable(appraisal.claims),
        "veritee.trace": _trace(appraisal),
        "veritee.failures": [fd.to_dict() for fd in appraisal.failures],
    }


def _envelope(submods: dict[str, Any], *, issuer: str, now: float, ttl: int,
              nonce: bytes | None, cnf_jwk: Mapping[str, Any] | None, build: str,
              developer: str, jti: str | None) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "eat_profile": EAR_PROFILE,
        "iss": issuer,
        "iat": int(now),
        "exp": int(now) + ttl,
        "jti": jti or uuid.uuid4().hex,
        "ear.verifier-id": {"build": build, "developer": developer},
        "submods": submods,
    }
    if nonce is not None:
        claims["eat_nonce"] = b64url(nonce)
    if cnf_jwk is not None:
        claims["cnf"] = {"jwk": dict(cnf_jwk)}
    return claims


def ear_claims(appraisal: Appraisal, *, issuer: str, now: float, ttl: int,
               nonce: bytes | None = None, cnf_jwk: Mapping[str, Any] | None = None,
               build: str = "veritee", developer: str = "veritee",
               jti: str | None = None) -> dict[str, Any]:
    """The EAR claim set for ``appraisal`` (see the module docstring for every claim)."""
    return _envelope({appraisal.tee: _submod(appraisal)}, issuer=issuer, now=now, ttl=ttl,
                     nonce=nonce, cnf_jwk=cnf_jwk, build=build, developer=developer, jti=jti)


MAX_SUBMODS = 16
"""Most submodules an EAR may carry (one CPU plus up to 15 devices): a bound for verify_ear."""


def submod_names(appraisals: Iterable[Appraisal]) -> list[str]:
    """One submodule name per attester: its scheme, then ``<scheme>-2``, ``<scheme>-3`` ...
    for further attesters of the same scheme (eight GPUs: ``nvidia``, ``nvidia-2`` ...)."""
    seen: dict[str, int] = {}
    out = []
    for appraisal in appraisals:
        n = seen[appraisal.tee] = seen.get(appraisal.tee, 0) + 1
        out.append(appraisal.tee if n == 1 else f"{appraisal.tee}-{n}")
    return out


def composite_ear_claims(appraisals: Iterable[Appraisal], *, issuer: str, now: float,
                         ttl: int, nonce: bytes | None = None,
                         cnf_jwk: Mapping[str, Any] | None = None, build: str = "veritee",
                         developer: str = "veritee", jti: str | None = None) -> dict[str, Any]:
    """One EAR for several attesters bound to one challenge (a CPU, then its devices): a
    submodule per attester (draft-ietf-rats-ear, "submods"), named by :func:`submod_names`,
    each as :func:`ear_claims` makes it, except that a device's ``veritee.trace`` keeps only
    the checks that did not pass (the token must fit in an HTTP header). The first is the
    primary attester (the one whose key is ``cnf``); :func:`worst_status` over them is the
    result's status."""
    parts = list(appraisals)
    if not parts:
        raise ValueError("composite_ear_claims: no appraisal")
    if len(parts) > MAX_SUBMODS:
        raise ValueError(f"composite_ear_claims: {len(parts)} attesters, at most {MAX_SUBMODS}")
    submods: dict[str, Any] = {}
    for i, (name, part) in enumerate(zip(submod_names(parts), parts, strict=True)):
        sub = _submod(part)
        if i:
            # The token travels in an HTTP header: a device's trace lists only the checks
            # that did not pass (its failures, with got/want, are in veritee.failures).
            sub["veritee.trace"] = {k: v for k, v in sub["veritee.trace"].items()
                                    if v != Outcome.PASS.value}
        submods[name] = sub
    return _envelope(submods, issuer=issuer, now=now, ttl=ttl, nonce=nonce, cnf_jwk=cnf_jwk,
                     build=build, developer=developer, jti=jti)


def worst_status(statuses: Iterable[str]) -> str:
    """The overall status of several submodules: the worst of them (contraindicated, then
    warning, then none, then affirming; draft-ietf-rats-ear leaves the roll-up to the
    verifier, and a composite is only as trustworthy as its weakest attester)."""
    found = list(statuses)
    if len(found) == 1 and found[0] in _STATUS_ORDER:
        return found[0]  # one attester (most EARs): nothing to roll up
    if not found:
        raise ValueError("worst_status: no status")
    return max(found, key=_STATUS_ORDER.index)


def public_jwk(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey, *,
               kid: str | None = None, alg: str | None = None) -> dict[str, Any]:
    """The public JWK (RFC 7517) of an EC key; with ``kid``/``alg``/``use`` when given."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    jwk = ECKey.import_key(pub).as_dict(private=False)
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
        jwk["use"] = "sig"
    return dict(jwk)


def _alg_for(key: ec.EllipticCurvePrivateKey) -> str:
    for alg, curve in SIGNING_ALGORITHMS.items():
        if isinstance(key.curve, curve):
            return alg
    raise ValueError(f"EAR signing keys must be P-256 or P-384, got {key.curve.name}")


def sign_ear(claims: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, *, kid: str) -> str:
    """Sign the claims as a compact JWS/JWT (ES256 for P-256 keys, ES384 for P-384)."""
    alg = _alg_for(key)
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    return str(jwt.encode(header, dict(claims), ECKey.import_key(key), algorithms=[alg]))


@dataclass(frozen=True)
class EarResult:
    """A verified EAR: its header, its claims, and views of its submodules.

    The first submodule is the primary attester (the CPU of a composite, whose key is
    ``cnf``); :attr:`tee`, :attr:`submod` and :attr:`verified_claims` are its, while
    :attr:`status` is the worst over every submodule.
    """

    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def submods(self) -> dict[str, dict[str, Any]]:
        """Every submodule by name, the primary attester first."""
        value: dict[str, dict[str, Any]] = self.claims["submods"]
        return value

    @property
    def primary(self) -> str:
        """The primary submodule's name."""
        return str(next(iter(self.claims["submods"])))

    @property
    def tee(self) -> str:
        """The primary attester's scheme (``sevsnp``, ``tdx`` ...)."""
        return self.scheme_of(self.primary)

    def scheme_of(self, name: str) -> str:
        """The scheme of submodule ``name``: its verified ``tee`` claim, else its name."""
        claims = self.submods[name].get("veritee.verified-claims")
        tee = claims.get("tee") if isinstance(claims, dict) else None
        return tee if isinstance(tee, str) and tee else name

    @property
    def submod(self) -> dict[str, Any]:
        """The appraisal of the primary submodule."""
        value: dict[str, Any] = self.claims["submods"][self.primary]
        return value

    @property
    def status(self) -> str:
        """``affirming``, ``warning``, ``contraindicated`` or ``none``: the worst over every
        submodule (:func:`worst_status`)."""
        return worst_status([str(s["ear.status"]) for s in self.submods.values()])

    @property
    def verified_claims(self) -> dict[str, Any]:
        """The verified evidence claims (measurement, TCB, guest policy, ...)."""
        value: dict[str, Any] = self.submod.get("veritee.verified-claims", {})
        return value

    @property
    def cnf_jwk(self) -> dict[str, Any] | None:
        """The TEE's ephemeral public key the token is bound to."""
        cnf = self.claims.get("cnf")
        return dict(cnf["jwk"]) if isinstance(cnf, dict) and "jwk" in cnf else None


def _fail(code: str, message: str) -> VerificationError:
    return VerificationError(f"ear.{code}", message)


# Per algorithm: the curve instance, its field size in bytes (half a JWS signature), the hash.
_ALGS: dict[str, tuple[ec.EllipticCurve, int, ec.ECDSA]] = {
    "ES256": (ec.SECP256R1(), 32, ec.ECDSA(hashes.SHA256())),
    "ES384": (ec.SECP384R1(), 48, ec.ECDSA(hashes.SHA384()))}
MAX_TOKEN = 256 * 1024
"""The longest EAR :func:`verify_ear` reads (characters): 16 submodules fit many times over."""
_CURVE_ALG = {"P-256": "ES256", "P-384": "ES384"}


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    # orjson: RFC 8259 strictly (no NaN, no lone surrogates, bounded depth), and the EAR's
    # ~6 KB parse on every release at a third of json's cost.
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _fail("format", f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise _fail("format", f"{what}: want a JSON object")
    return value


class EarKeys:
    """EAR verification keys by ``kid``, imported once from a JWK Set (RFC 7517 section 5).

    Only EC P-256/P-384 keys can verify an EAR (:data:`SIGNING_ALGORITHMS`); other keys in the
    set are ignored, a malformed EC key refuses the whole set. Hold one and pass it to
    :func:`verify_ear` to verify many tokens without importing the keys each time.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | KeySet) -> EarKeys:
        """Import the EC keys of ``jwks`` (a JWK Set document or a joserfc ``KeySet``);
        raise :class:`VerificationError` ``ear.format`` on a malformed one."""
        if isinstance(jwks, KeySet):
            docs: object = [k.as_dict(private=False) for k in jwks.keys]
        else:
            docs = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(docs, list):
            raise _fail("format", "jwks: want {\"keys\": [...]}")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for i, doc in enumerate(docs):
            if not isinstance(doc, Mapping) or doc.get("kty") != "EC":
                continue
            kid, crv = doc.get("kid"), doc.get("crv")
            if not isinstance(kid, str) or crv not in _CURVE_ALG:
                continue
            if doc.get("alg") not in (None, _CURVE_ALG[crv]):
                raise _fail("format", f"jwks.keys[{i}]: alg {str(doc.get('alg'))[:20]!r} does "
                            f"not match crv {crv}")
            curve, size, _ = _ALGS[_CURVE_ALG[crv]]
            try:
                x, y = _unb64url(str(doc.get("x"))), _unb64url(str(doc.get("y")))
                if len(x) != size or len(y) != size:
                    raise ValueError("coordinate size")
                key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
            except ValueError:
                raise _fail("format", f"jwks.keys[{i}]: not a valid {crv} public key"
                            ) from None
            keys.setdefault(kid, key)  # the first key of a kid, as a KeySet lookup has it
        return cls(keys)

    def get(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The key named ``kid``, or None."""
        return self._keys.get(kid)

    def __len__(self) -> int:
        return len(self._keys)


_PRIVATE_JWK_MEMBERS = frozenset(("d", "p", "q", "dp", "dq", "qi"))


def _check_cnf(jwk_doc: Mapping[str, Any]) -> None:
    """``cnf.jwk`` must be a public key the release can encrypt to: EC P-256/384/521 with
    the point on its curve, or RSA within the KBS protocol's bounds (FormatError if not)."""
    if jwk_doc.get("kty") == "EC":
        ec_public_key(jwk_doc)
    else:
        rsa_public_key(jwk_doc)


def verify_ear(token: str, jwks: Mapping[str, Any] | KeySet | EarKeys, *,
               now: float | None = None, issuer: str | None = None, leeway: int = 0,
               accept: Iterable[str] = ("affirming",)) -> EarResult:
    """Verify an EAR JWT offline (passport model) and return it; raise on any failure.

    Checks, in order: compact JWS form (RFC 7515 section 7.1, strict base64url) with an
    ES256/ES384 header naming a ``kid`` in ``jwks`` (a JWK Set document, a joserfc
    ``KeySet`` or :class:`EarKeys`, the fastest: imported once) whose curve is the
    algorithm's, and no ``crit`` member; the signature; ``eat_profile``; ``iss`` when
    ``issuer`` is given; ``iat`` not in the future and ``exp`` not past (``leeway`` seconds);
    one to :data:`MAX_SUBMODS` submodules, each with a status, and the worst of them
    (:func:`worst_status`) in ``accept`` (default: only ``affirming``: the service also signs
    EARs for *rejected* evidence, for the record, and those must not pass as results; pass
    :data:`TIERS` to read any); ``cnf.jwk``, when present, an EC (or, for KBS RSA TEE keys,
    RSA) public JWK; the verified claims an object. Raises
    :class:`VerificationError` with code ``ear.<what>``.
    """
    now = time.time() if now is None else now
    accepted = tuple(accept)
    # The two dots found, not the token split: str.find scans a 6 KB token with memchr,
    # str.split one character at a time.
    first = token.find(".") if isinstance(token, str) and len(token) <= MAX_TOKEN else -1
    second = token.find(".", first + 1) if first >= 0 else -1
    if second < 0 or token.find(".", second + 1) >= 0:
        # Five parts would be a JWE.
        raise _fail("format", "not a compact JWS (three dot-separated parts)")
    keys = jwks if isinstance(jwks, EarKeys) else EarKeys.from_jwks(jwks)
    head_b64, body_b64, sig_b64 = token[:first], token[first + 1:second], token[second + 1:]
    try:
        header_raw, payload, signature = (_unb64url(head_b64), _unb64url(body_b64),
                                          _unb64url(sig_b64))
    except ValueError:
        raise _fail("format", "malformed token (a part is not base64url)") from None
    header = _json_object(header_raw, "JWS header")
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in SIGNING_ALGORITHMS:
        raise _fail("signature", f"token signature or header invalid (alg "
                    f"{str(alg)[:20]!r}, want one of {', '.join(SIGNING_ALGORITHMS)})")
    if "crit" in header:
        # RFC 7515 section 4.1.11: no extension is understood here, so none may be critical.
        raise _fail("signature", "token signature or header invalid (crit is not supported)")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise _fail("signature", "token signature or header invalid (kid names no key of "
                    "the JWK Set)")
    curve, size, ecdsa = _ALGS[str(alg)]
    if key.curve.name != curve.name or len(signature) != 2 * size:
        raise _fail("signature", "token signature or header invalid (the key or signature "
                    f"does not fit {alg})")
    der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                               int.from_bytes(signature[size:], "big"))
    try:
        key.verify(der, token[:second].encode("ascii"), ecdsa)
    except InvalidSignature:
        raise _fail("signature", "token signature or header invalid (bad signature)"
                    ) from None
    claims = _json_object(payload, "JWT claims")
    if claims.get("eat_profile") != EAR_PROFILE:
        raise _fail("profile", f"eat_profile: got {claims.get('eat_profile')!r}, "
                    f"want {EAR_PROFILE!r}")
    if issuer is not None and claims.get("iss") != issuer:
        raise _fail("issuer", f"iss: got {claims.get('iss')!r}, want {issuer!r}")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise _fail("format", "exp and iat must be integers")
    if now > exp + leeway:
        raise _fail("expired", f"exp: token expired {int(now - exp)} s ago")
    if iat > now + leeway:
        raise _fail("not_yet_valid", "iat: issued in the future")
    submods = claims.get("submods")
    if not isinstance(submods, dict) or not 1 <= len(submods) <= MAX_SUBMODS:
        raise _fail("format", f"submods: want 1..{MAX_SUBMODS} appraised submodules")
    for sub in submods.values():
        if not isinstance(sub, dict) or sub.get("ear.status") not in TIERS:
            raise _fail("format", "submods: ear.status missing or unknown")
        if not isinstance(sub.get("veritee.verified-claims", {}), dict):
            raise _fail("format", "veritee.verified-claims: want an object")
    overall = worst_status(str(sub["ear.status"]) for sub in submods.values())
    if "cnf" in claims:
        cnf = claims["cnf"]
        jwk_doc = cnf.get("jwk") if isinstance(cnf, dict) else None
        # EC, or RSA for the KBS protocol's RSA TEE keys; never a private member.
        if not isinstance(jwk_doc, dict) or jwk_doc.get("kty") not in ("EC", "RSA") or \
                not _PRIVATE_JWK_MEMBERS.isdisjoint(jwk_doc):
            raise _fail("format", "cnf.jwk: want an EC or RSA public JWK")
        try:
            _check_cnf(jwk_doc)
        except FormatError:
            raise _fail("format", f"cnf.jwk: not a valid {jwk_doc['kty']} public key") from None
    if overall not in accepted:
        raise _fail("status", f"ear.status: got {overall!r}, want "
                    f"{' or '.join(repr(a) for a in accepted)}")
    return EarResult(header=header, claims=claims)
