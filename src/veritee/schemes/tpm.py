"""The TPM 2.0 scheme: a quote, its AK and PCR values (and an event log) in one container.

Containers recognised (each one evidence, so an attester can send it and the service take it):

* Trustee's ``tpm`` verifier evidence JSON (``ak_public`` base64 SPKI, ``tpm_quote``
  {``message``, ``signature``, ``pcrs``}), with the optional members veritee's swtpm attester
  adds (``ak_tpmt_public``, ``event_log``, ``ak_certificate``; see
  :mod:`veritee.collateral.tpm`);
* go-tpm-tools' ``attest.Attestation`` protobuf (GCE Shielded/Confidential VMs: the AK
  TPMT_PUBLIC, one quote per PCR bank, the event log, the AK certificate);
* go-attestation's ``attest-tool dump`` JSON (AK, quote, PCRs, event log).

Verification (``veritee.trust.tpm``): every quote's signature by the AK, TPM_GENERATED, the PCR
digest over the carried values, the event log replayed against every quoted bank (H-CRTM
locality, SM3, the ExitBootServices workaround), all quotes carrying the same extraData; then
the AK's binding to a genuine TPM (:func:`~veritee.trust.tpm.bind_ak`): an AK certificate
chained to the ``tpm`` roots, or an AK enrolled by credential activation.

Anchors (vendor ``tpm``): a :class:`~veritee.trust.tpm.TpmAnchors` (EK/AK CA roots, offered
intermediates, enrolled AKs). Collateral (vendor ``tpm``): the same type, from files a user
names (``--certs DIR``: :meth:`TpmScheme.load_collateral`); roots in it are trusted because the
user named them, as ``veritee tpm ek --root`` does. Binding: TPMS_ATTEST.extraData,
``binding_size`` 32 (SHA-256(nonce || SPKI): not every TPM accepts 64 bytes of qualifying
data). Policy: :class:`~veritee.policy.tpm.TpmPolicy` (the AK must be bound or pinned).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from veritee.errors import CollateralError, ConfigError, FormatError, VerificationError
from veritee.findings import Finding, Outcome
from veritee.formats.eventlog import EventLog
from veritee.formats.tpm import HashAlg, TpmsAttest
from veritee.policy import Appraisal
from veritee.policy.tpm import (
    TpmPolicy,
    appraise,
    claims,
    policy_from_mapping,
    policy_to_mapping,
)
from veritee.schemes import Context, Verified
from veritee.trust.tpm import AkPublic, TpmAnchors, VerifiedTpmQuote, bind_ak, verify_quote

__all__ = ["SCHEME", "TpmEvidence", "TpmScheme", "merge_quotes", "tpm_vector"]

_MAX_SNIFF = 4096


@dataclass(frozen=True)
class TpmEvidence:
    """Parsed evidence: the quotes (one per bank for go-tpm-tools), the AK and what came with
    it. ``quotes`` are :class:`~veritee.collateral.tpm.QuoteEvidence`."""

    container: str
    quotes: tuple[Any, ...]
    ak: AkPublic
    event_log: EventLog | None = None
    ak_certificate: bytes | None = field(default=None, repr=False)
    ak_intermediates: tuple[bytes, ...] = field(default=(), repr=False)


def _json_keys(data: bytes) -> set[str]:
    """Which container keys a JSON object names (a byte search of its first MiB: cheap)."""
    if not bytes(data[:_MAX_SNIFF]).lstrip().startswith(b"{"):
        return set()
    head = bytes(data[:1 << 20])
    return {k for k in ("ak_public", "tpm_quote", "AK", "Quote", "Log") if f'"{k}"'.encode()
            in head}


def _looks_like_go_tpm_tools(data: bytes) -> bool:
    """Field 1 (ak_pub, length-delimited) holding a TPMT_PUBLIC: type RSA (0x0001) or ECC
    (0x0023), then a nameAlg (proto/attest.proto; Part 2, 12.2.4)."""
    head, total = bytes(data[:16]), len(data)
    if total < 8 or head[0] != 0x0A:
        return False
    pos, size, shift = 1, 0, 0
    while pos < len(head) and pos < 6:
        b = head[pos]
        size |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            break
        shift += 7
    body = head[pos:pos + 4]
    return (8 <= size <= total - pos and body[:2] in (b"\x00\x01", b"\x00\x23")
            and body[2:4] in (b"\x00\x04", b"\x00\x0b", b"\x00\x0c", b"\x00\x0d"))


def merge_quotes(quotes: Sequence[VerifiedTpmQuote]) -> VerifiedTpmQuote:
    """One verified view of several quotes by one AK over one extraData (go-tpm-tools sends
    one per bank): the first quote whose banks are not only SHA-1 leads, the others are
    ``extra_quotes``; PCRs and replayed pairs are the union (each quote's were verified)."""
    if not quotes:
        raise FormatError("TPM evidence", "quotes", got="none", want="at least one quote")
    for q in quotes[1:]:
        if not hmac.compare_digest(q.attest.extra_data, quotes[0].attest.extra_data):
            raise VerificationError("tpm.quote.nonce", "TPMS_ATTEST.extraData: the quotes of "
                                    "one attestation carry different extraData")
    strong = [q for q in quotes if any(s.hash_alg is not HashAlg.SHA1
                                       for s in q.quote.pcr_select)]
    lead = (strong or list(quotes))[0]
    rest = tuple(q for q in quotes if q is not lead)
    pcrs: dict[HashAlg, dict[int, bytes]] = {}
    for q in (lead, *rest):
        for bank, values in q.pcrs.items():
            pcrs.setdefault(bank, {}).update(values)
    replayed = tuple(dict.fromkeys(p for q in (lead, *rest) for p in q.replayed))
    workaround = next((q.eventlog_workaround for q in (lead, *rest) if q.eventlog_workaround),
                      None)
    checks = tuple(c for q in (lead, *rest) for c in q.checks)
    return replace(lead, pcrs=pcrs, replayed=replayed, extra_quotes=rest, checks=checks,
                   eventlog_workaround=workaround,
                   unquoted_log_pcrs=frozenset.intersection(
                       *(q.unquoted_log_pcrs for q in (lead, *rest))))


# -- AR4SI -------------------------------------------------------------------------------------
def _failed(findings: Sequence[Finding], *codes: str) -> bool:
    return any(f.outcome is Outcome.FAIL and f.code in codes for f in findings)


def _passed(findings: Sequence[Finding], code: str) -> bool:
    return any(f.outcome is Outcome.PASS and f.code == code for f in findings)


def tpm_vector(result: Appraisal, verified: VerifiedTpmQuote) -> dict[str, int]:
    """The AR4SI vector of a TPM appraisal (draft-ietf-rats-ar4si 2.3), from what was checked.

    ``hardware``: affirming (2) when the AK is bound to a genuine TPM by a verifier check
    (certificate, credential activation, a verified Azure hardware report) and its attributes
    passed; no claim when only a policy pin vouches for it (the verifier checked nothing about
    the TPM); 97 (not recognised) when the AK checks failed; 32 when the TPM firmware or clock
    checks failed. ``executables``: 3 (approved boot) when reference PCR values matched, 33
    when a PCR or event rule failed, else no claim. ``configuration``: 32 when a weak hash or a
    missing-ExitBootServices log was refused, else no claim. ``instance-identity`` is the
    front door's binding check. A TPM says nothing of memory encryption: no runtime-opaque.
    """
    from veritee.results import (
        AFFIRMING,
        APPROVED_BOOT,
        NO_CLAIM,
        NOT_RECOGNIZED,
        UNRECOGNIZED_RUNTIME,
        WARNING_UNSAFE,
        binding_identity,
    )

    f = result.findings
    if _failed(f, "tpm.ak.unbound", "tpm.ak.properties", "tpm.ak.uncertified",
               "tpm.qualified_signer.mismatch"):
        hardware = NOT_RECOGNIZED
    elif _failed(f, "tpm.firmware.below_minimum", "tpm.clock.unsafe"):
        hardware = WARNING_UNSAFE
    elif verified.ak_binding is not None and not _failed(f, "tpm.ak.properties"):
        hardware = AFFIRMING
    else:
        hardware = NO_CLAIM
    if _failed(f, "tpm.pcr.mismatch", "tpm.pcr.not_quoted", "tpm.eventlog.missing",
               "tpm.eventlog.unquoted", "tpm.eventlog.required_event_missing",
               "tpm.eventlog.forbidden_event"):
        executables = UNRECOGNIZED_RUNTIME
    elif _passed(f, "tpm.pcr.mismatch"):
        executables = APPROVED_BOOT
    else:
        executables = NO_CLAIM
    configuration = (WARNING_UNSAFE if _failed(f, "tpm.hash.weak",
                                               "tpm.eventlog.exit_boot_services_missing")
                     else NO_CLAIM)
    return {"hardware": hardware, "instance-identity": binding_identity(result),
            "executables": executables, "configuration": configuration}


# -- the scheme ----------------------------------------------------------------------------------
def _tpm_anchors(ctx: Context, vendor: str) -> TpmAnchors | None:
    """The relying party's anchors merged with roots/intermediates the user named."""
    found: list[TpmAnchors | None] = []
    for name, value in (("anchors", ctx.anchors.get(vendor)),
                        ("collateral", ctx.collateral.get(vendor))):
        if value is not None and not isinstance(value, TpmAnchors):
            raise ConfigError(f"{name}[{vendor!r}]: got a {type(value).__name__}, want a "
                              "veritee.trust.tpm.TpmAnchors")
        found.append(value)
    anchors, extra = found
    if anchors is None:
        return extra
    if extra is None:
        return anchors
    return TpmAnchors(roots=(*anchors.roots, *extra.roots),
                      intermediates=(*anchors.intermediates, *extra.intermediates),
                      registered_aks=(*anchors.registered_aks, *extra.registered_aks))


class TpmScheme:
    """TPM 2.0 quotes (Trustee ``tpm`` JSON, go-tpm-tools protobuf, go-attestation dump)."""

    name = "tpm"
    vendor = "tpm"
    binding_size = 32
    policy_type = TpmPolicy

    def recognise(self, data: bytes) -> bool:
        """A JSON object with ``ak_public`` and ``tpm_quote`` (Trustee) or ``AK``/``Quote``/
        ``Log`` (go-attestation), or a go-tpm-tools protobuf starting with a TPMT_PUBLIC."""
        try:
            keys = _json_keys(data)
            if {"ak_public", "tpm_quote"} <= keys or {"AK", "Quote", "Log"} <= keys:
                return True
            return _looks_like_go_tpm_tools(data)
        except (TypeError, ValueError):
            return False

    def parse(self, data: bytes, *, attached: bytes | None = None) -> TpmEvidence:
        """The typed evidence; ``attached`` is unused (everything travels in the container)."""
        from veritee.collateral.tpm import (
            load_go_attestation_dump,
            load_go_tpm_tools_attestation,
            load_trustee_tpm,
        )

        raw = bytes(data)
        keys = _json_keys(raw)
        if {"ak_public", "tpm_quote"} <= keys:
            quotes, container = [load_trustee_tpm(raw)], "trustee-tpm"
        elif {"AK", "Quote", "Log"} <= keys:
            quotes, container = [load_go_attestation_dump(raw)], "go-attestation"
        elif _looks_like_go_tpm_tools(raw):
            quotes, container = load_go_tpm_tools_attestation(raw), "go-tpm-tools"
        else:
            raise FormatError("TPM evidence", "<format>", got=f"{len(raw)} bytes starting "
                              f"{raw[:8].hex()}", want="Trustee tpm JSON, a go-tpm-tools "
                              "Attestation or a go-attestation dump")
        if not quotes:
            raise FormatError("TPM evidence", "quotes", got="none", want="at least one")
        first = quotes[0]
        if first.ak is None:
            raise FormatError("TPM evidence", "ak", got="missing", want="the AK")
        log = EventLog.from_bytes(first.event_log) if first.event_log else None
        return TpmEvidence(container, tuple(quotes), first.ak, log, first.ak_cert,
                           first.ak_intermediates)

    def verify(self, evidence: TpmEvidence, ctx: Context) -> Verified:
        """Every quote (signature, TPM_GENERATED, PCR digest, event-log replay), the same
        extraData in all, then the AK's binding; extraData is compared by the front door."""
        verified = []
        for q in evidence.quotes:
            log = evidence.event_log
            if log is not None and not set(log.banks) & set(q.pcrs):
                log = None  # a bank the log does not have: this quote's PCRs stand alone
            # No PCR values at all (Parsec's token): the digest check is recorded as skipped
            # and no PCR is claimed; a policy naming PCRs then finds them not quoted.
            verified.append(verify_quote(q.attest, q.signature, evidence.ak, nonce=None,
                                         pcrs=q.pcrs if any(q.pcrs.values()) else None,
                                         event_log=log))
        # A log no quote backs (no bank or PCR in common) replays nothing: it stays unused,
        # and a policy that needs it finds it missing (tpm.eventlog.missing / .unquoted).
        merged = replace(merge_quotes(verified), event_log=evidence.event_log)
        bound = bind_ak(merged, _tpm_anchors(ctx, self.vendor), now=ctx.now,
                        ak_certificate=evidence.ak_certificate,
                        intermediates=evidence.ak_intermediates)
        if bound.ak_binding == "certificate":
            # TPM CAs publish CRLs by URL only (no offline source here): say it was not
            # checked, and refuse when the verifier requires revocation to be checked.
            if ctx.require_revocation:
                raise CollateralError("tpm AK certificate chain: revocation was required but "
                                      "no CRL source for TPM EK/AK CAs exists here")
            skip = Finding("tpm.ak.revocation", Outcome.SKIP, "AK certificate chain",
                           message="not checked: no CRL source for TPM EK/AK CAs")
            bound = replace(bound, checks=(*bound.checks, skip))
        return Verified(self.name, bound, bound.checks, ctx.now)

    def binding(self, verified: Verified) -> bytes:
        """TPMS_ATTEST.extraData (the qualifying data the quote was made with)."""
        attest: TpmsAttest = verified.native.attest
        return attest.extra_data

    def claims(self, verified: Verified) -> dict[str, Any]:
        """The TPM claims (:func:`veritee.policy.tpm.claims`) plus the common ones."""
        own = claims(verified.native)
        return {**own, "tee": self.name, "measurement": None, "debug": None,
                "tcb_status": None, "advisory_ids": [],
                "binding": self.binding(verified).hex()}

    def default_policy(self) -> TpmPolicy:
        """:class:`TpmPolicy` with its defaults: no reference PCRs, the AK bound or pinned."""
        return TpmPolicy()

    def policy_from_mapping(self, data: Mapping[str, Any]) -> TpmPolicy:
        """See :func:`veritee.policy.tpm.policy_from_mapping`."""
        return policy_from_mapping(data)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """See :func:`veritee.policy.tpm.policy_to_mapping`."""
        return policy_to_mapping(policy)

    def appraise(self, verified: Verified, policy: Any) -> Appraisal:
        """:func:`veritee.policy.tpm.appraise` with the common claims and the TPM vector."""
        result = appraise(verified.native, policy)
        result = replace(result, tee=self.name, claims=self.claims(verified))
        return replace(result, vector=tpm_vector(result, verified.native))

    def new_cache(self) -> None:
        """No cache: an AK chain is a few signatures, checked with the quote."""
        return None

    def load_collateral(self, paths: Sequence[Path]) -> TpmAnchors | None:
        """Roots and intermediates from files and directories (``--certs DIR``): every
        self-signed certificate is a root, every other one an intermediate; ``None`` when no
        file holds a certificate (or one that is not a CA: leaf certificates are evidence)."""
        from cryptography import x509

        from veritee.crypto._x509 import load_certificate_chain

        files: list[Path] = []
        for path in paths:
            p = Path(path)
            if p.is_dir():
                files += sorted(f for f in p.iterdir() if f.is_file())
            elif p.is_file():
                files.append(p)
        roots: list[x509.Certificate] = []
        inter: list[x509.Certificate] = []
        for f in files:
            if f.stat().st_size > 1 << 20:
                continue
            try:
                certs = load_certificate_chain(f.read_bytes(), structure=str(f))
            except FormatError:
                continue
            for cert in certs:
                try:
                    ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                except x509.ExtensionNotFound:
                    ca = False
                if not ca:
                    continue
                (roots if cert.issuer == cert.subject else inter).append(cert)
        if not roots and not inter:
            return None
        return TpmAnchors(roots=tuple(roots), intermediates=tuple(inter))


SCHEME = TpmScheme()
