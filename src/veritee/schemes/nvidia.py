"""The NVIDIA scheme: one GPU or NVSwitch, an SPDM 1.1 GET_MEASUREMENTS transcript.

Evidence: the binary transcript or its hex text, with the device certificate chain (PEM, leaf
first) given as ``parse(data, attached=chain)``; or NVIDIA's nvat evidence JSON holding one
device (its chain and nonce inside). Composite evidence keeps one part per device: an nvat
list of several devices is split by the caller with :func:`split_nvat`.

Anchors (vendor ``nvidia``): ``None`` for the pinned NVIDIA Device Identity CA
(:data:`~veritee.trust.nvidia.NVIDIA_DEVICE_IDENTITY_CA_SHA256`), or SHA-256 pins (hex), root
certificates or their PEM/DER bytes replacing it. Collateral (vendor ``nvidia``): a device
chain (certificates, leaf first) used when the evidence has none attached
(:meth:`NvidiaScheme.load_collateral` reads it from a PEM file).

Binding: the requester's 32-byte nonce in GET_MEASUREMENTS (DSP0274 1.1), ``binding_size``
32: the verifier's challenge gives SHA-256(nonce || SPKI), which the CPU TEE's attester passes
to the GPU driver as the request nonce, so one challenge binds the CPU and every device.

Revocation: the device chain's status is published only by NVIDIA's OCSP service, which
offline verification never queries; the trace says so (``nvidia.chain.revocation`` skipped)
and a context that requires revocation refuses the report.

Common claims: ``measurement`` is ``None`` (a device has dozens of measurement blocks, see
``measurements``); ``debug`` and ``tcb_status`` are ``None`` (the report carries neither).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from veritee.errors import CollateralError, ConfigError, FormatError, VerificationError
from veritee.formats.nvidia import NONCE_SIZE, GpuReport, parse_nvat_evidence
from veritee.policy import Appraisal
from veritee.policy.nvidia import GpuPolicy, appraise, policy_from_mapping, policy_to_mapping
from veritee.schemes import Context, Verified
from veritee.schemes._shared import (
    PolicyRouted,
    identity,
    plain,
    ran_and_passed,
    read_anchor_files,
    root_anchors,
)
from veritee.trust.nvidia import VerifiedGpuReport, parse_cert_chain, verify_gpu_report

__all__ = ["SCHEME", "NvidiaEvidence", "NvidiaScheme", "split_nvat", "trust_vector"]

_SPDM_GET_MEASUREMENTS = b"\x11\xe0"  # SPDMVersion 1.1, RequestResponseCode GET_MEASUREMENTS
_HEX = frozenset(b"0123456789abcdefABCDEF \t\r\n")


@dataclass(frozen=True)
class NvidiaEvidence:
    """One device's report, its chain when it came with one, and nvat's nonce and arch."""

    report: GpuReport
    chain: tuple[x509.Certificate, ...] | None = None
    nvat_nonce: bytes | None = None
    arch: str | None = None

    @property
    def format(self) -> str:
        """A short name of the evidence format."""
        return "nvidia-nvat-evidence" if self.arch is not None else "nvidia-spdm"


def _is_nvat(data: bytes) -> bool:
    return (data.lstrip()[:1] == b"[" and b'"evidence"' in data[:1 << 20]
            and b'"arch"' in data[:1 << 20])


def _is_hex_transcript(data: bytes) -> bool:
    text = bytes(data[:96]).strip().removeprefix(b"0x")
    return text[:4].lower() == b"11e0" and all(b in _HEX for b in text)


def split_nvat(data: bytes) -> list[tuple[bytes, bytes]]:
    """One ``(transcript, PEM chain)`` per device of an nvat evidence JSON, in its order:
    each is an evidence part for this scheme (``EvidencePart(data, "nvidia", attached)``)."""
    return [(ev.report.to_bytes(), ev.certificate_pem) for ev in parse_nvat_evidence(data)]


def _chain(value: Any) -> tuple[x509.Certificate, ...]:
    if isinstance(value, bytes | str):
        return parse_cert_chain(value)
    if isinstance(value, Iterable):
        chain = tuple(value)
        if all(isinstance(c, x509.Certificate) for c in chain):
            return chain
    raise ConfigError("collateral['nvidia']: want the device chain (certificates, leaf first, "
                      f"or their PEM), got {type(value).__name__}")


def trust_vector(appraisal: Appraisal) -> dict[str, int]:
    """The AR4SI vector of an NVIDIA appraisal (``instance-identity``: :func:`identity`).

    ``hardware``: unsafe when a driver/VBIOS version allow-list failed, affirming when one
    was checked and passed (the chain to the NVIDIA root and the FWID binding were verified
    before), no claim otherwise (a genuine device whose firmware nobody appraised; OCSP
    revocation is never checked offline). ``executables``: approved when every listed
    measurement block matched its reference values, unrecognised when one did not.
    ``configuration``: unsafe when the request did not ask for every block, otherwise no
    claim (the report has no configuration the policy appraises).
    """
    from veritee.results import (
        AFFIRMING,
        APPROVED_BOOT,
        NO_CLAIM,
        UNRECOGNIZED_RUNTIME,
        WARNING_UNSAFE,
        failed,
    )

    f = appraisal.findings
    versions = ("nvidia.driver_version.", "nvidia.vbios_version.")
    hardware = (WARNING_UNSAFE if failed(f, versions)
                else AFFIRMING if ran_and_passed(f, versions) else NO_CLAIM)
    if failed(f, ("nvidia.measurement.",)):
        executables = UNRECOGNIZED_RUNTIME
    elif ran_and_passed(f, ("nvidia.measurement.",)):
        executables = APPROVED_BOOT
    else:
        executables = NO_CLAIM
    configuration = WARNING_UNSAFE if failed(f, ("nvidia.request.",)) else NO_CLAIM
    return {"hardware": hardware, "instance-identity": identity(appraisal, "nvidia.nonce."),
            "executables": executables, "configuration": configuration}


class NvidiaScheme(PolicyRouted):
    """NVIDIA GPU / NVSwitch SPDM measurement reports (one device per evidence)."""

    name = "nvidia"
    vendor = "nvidia"
    binding_size = NONCE_SIZE
    policy_type = GpuPolicy
    _policy_appraise = staticmethod(appraise)
    _vector = staticmethod(trust_vector)

    def recognise(self, data: bytes) -> bool:
        """A binary or hex SPDM 1.1 GET_MEASUREMENTS transcript, or an nvat evidence JSON."""
        return (bytes(data[:2]) == _SPDM_GET_MEASUREMENTS or _is_hex_transcript(data)
                or _is_nvat(data))

    def split(self, data: bytes, attached: bytes | None = None
              ) -> list[tuple[bytes, bytes | None]]:
        """The evidence parts in ``data``, one per device (optional hook for callers that take
        whatever a user gives, such as the CLI): an nvat JSON of several devices becomes one
        ``(transcript, chain)`` per device (:func:`split_nvat`); anything else stays whole."""
        if _is_nvat(data) and bytes(data[:2]) != _SPDM_GET_MEASUREMENTS:
            return [(report, chain) for report, chain in split_nvat(data)]
        return [(data, attached)]

    def parse(self, data: bytes, *, attached: bytes | None = None) -> NvidiaEvidence:
        """The report; ``attached`` is the device chain (PEM, leaf first). An nvat JSON must
        hold exactly one device (split several with :func:`split_nvat`)."""
        chain = parse_cert_chain(attached) if attached else None
        if bytes(data[:2]) == _SPDM_GET_MEASUREMENTS:
            return NvidiaEvidence(GpuReport.from_bytes(data), chain)
        if _is_hex_transcript(data):
            return NvidiaEvidence(GpuReport.from_hex(data), chain)
        if _is_nvat(data):
            devices = parse_nvat_evidence(data)
            if len(devices) != 1:
                raise FormatError("NvatEvidence", "<root>", got=f"{len(devices)} devices",
                                  want="one device per evidence part (split_nvat splits them)")
            (ev,) = devices
            if len(ev.nonce) != NONCE_SIZE:
                raise FormatError("NvatEvidence", "[0].nonce", got=f"{len(ev.nonce)} bytes",
                                  want=f"{NONCE_SIZE} bytes")
            return NvidiaEvidence(ev.report, chain or parse_cert_chain(ev.certificate_pem),
                                  ev.nonce, ev.arch)
        raise FormatError("GpuReport", "<format>",
                          got=f"{len(data)} bytes starting {bytes(data[:4]).hex()}",
                          want="an SPDM 1.1 GET_MEASUREMENTS transcript (binary or hex) or an "
                          "nvat evidence JSON")

    def verify(self, evidence: NvidiaEvidence, ctx: Context) -> Verified:
        """Device chain to the pinned (or given) root, FWID, SPDM signature; for nvat also
        that the report's nonce is the one the JSON names.

        NVIDIA publishes device certificate status only through its online OCSP service,
        which verification never calls: with ``ctx.require_revocation`` every report is
        refused (``nvidia.chain.revocation``) rather than accepted unchecked.
        """
        if ctx.require_revocation:
            raise VerificationError("nvidia.chain.revocation",
                                    "revocation is required but NVIDIA device certificate "
                                    "status is only available from the online OCSP service, "
                                    "which offline verification does not query")
        chain = evidence.chain
        if chain is None:
            given = ctx.collateral.get(self.vendor)
            if given is None:
                raise CollateralError("an NVIDIA report needs its device certificate chain: "
                                      "attach it to the evidence or pass it as collateral "
                                      "(--certs chain.pem)")
            chain = _chain(given)
        roots = root_anchors(ctx.anchors.get(self.vendor), self.vendor,
                             "the NVIDIA Device Identity CA")
        verified = verify_gpu_report(evidence.report, chain, now=ctx.now,
                                     nonce=evidence.nvat_nonce, trusted_roots=roots)
        return Verified(self.name, verified, verified.checks, ctx.now)

    def binding(self, verified: Verified) -> bytes:
        """The GET_MEASUREMENTS request nonce (32 bytes)."""
        native: VerifiedGpuReport = verified.native
        return native.report.nonce

    def claims(self, verified: Verified) -> dict[str, Any]:
        """:func:`veritee.policy.nvidia.claims` plus the common claims."""
        from veritee.policy.nvidia import claims

        native: VerifiedGpuReport = verified.native
        return {**claims(native), "tee": self.name, "measurement": None, "debug": None,
                "tcb_status": None, "advisory_ids": [],
                "binding": self.binding(verified).hex()}

    def describe(self, evidence: NvidiaEvidence) -> dict[str, Any]:
        """Every field of the (unverified) report for ``veritee show``, JSON-ready."""
        report = evidence.report
        doc: dict[str, Any] = {
            "format": evidence.format, "evidence": plain(report),
            "opaque": {f.name: f.value.hex() for f in report.opaque.fields},
            "driver_version": report.opaque.driver_version,
            "vbios_version": report.opaque.vbios_version}
        if evidence.arch is not None:
            doc["arch"] = evidence.arch
        if evidence.chain is not None:
            doc["chain"] = plain(evidence.chain)
        return doc

    def load_anchors(self, paths: Sequence[Path]) -> list[bytes]:
        """Root certificates (PEM or DER) to trust instead of NVIDIA's (``--trust-root``);
        read as bytes, parsed when verification uses them."""
        return read_anchor_files(paths)

    def revocation(self, verified: Verified) -> dict[str, Any]:
        """Device certificate status is OCSP-only: never checked offline."""
        return {"checked": False, "detail": "not checked: NVIDIA publishes device "
                "certificate status only through its online OCSP service (a verifier that "
                "requires revocation refuses the report)"}

    def default_policy(self) -> GpuPolicy:
        """:class:`GpuPolicy` with its secure defaults (every measurement block asked for)."""
        return GpuPolicy()

    def policy_from_mapping(self, data: Mapping[str, Any]) -> GpuPolicy:
        """See :func:`veritee.policy.nvidia.policy_from_mapping`."""
        return policy_from_mapping(data)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """See :func:`veritee.policy.nvidia.policy_to_mapping`."""
        return policy_to_mapping(policy)

    def load_collateral(self, paths: Sequence[Path]) -> tuple[x509.Certificate, ...] | None:
        """A device chain (PEM, leaf first) from the first file that holds one."""
        from veritee.collateral.nvidia import load_cert_chain

        for path in paths:
            if not Path(path).is_file():
                continue
            try:
                return load_cert_chain(path)
            except (FormatError, ConfigError):
                continue
        return None


SCHEME = NvidiaScheme()
