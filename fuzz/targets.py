"""One fuzz target per parser and per verify path: the contract each must keep.

A *parse* target feeds the bytes to one parser. It may raise only the typed errors listed in
its entry (almost always :class:`~veritee.errors.FormatError`); anything else escaping is a
finding. A *verify* target feeds the bytes to a verifier with fixed collateral, trust roots and
time (the first byte picks one of the verification contexts found among the seeds, the rest
is the evidence). It may raise only :class:`~veritee.errors.VeriteeError`; and when it accepts,
the signed bytes must be those of a genuine seed, else a change to signed bytes verified.

Seeds come from the real samples in ``../shared/evidence`` (when present) and from the
emulated SEV-SNP platform, so every target also runs on a clean clone. The same targets drive
the atheris harness (``fuzz/run.py``), the bounded CI smoke run and the hypothesis property
tests in ``tests/fuzz``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from veritee.errors import ConfigError, FormatError, VerificationError, VeriteeError

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = Path(os.environ.get("VERITEE_EVIDENCE_DIR", REPO.parent / "shared" / "evidence"))
CRASHES = REPO / "tests" / "fuzz" / "crashes"
_MAX_SEED = 1 << 20


class SignedBytesAccepted(AssertionError):  # noqa: N818 - it is a finding, not an error
    """A verify target accepted evidence whose signed bytes are not a genuine seed's."""


@dataclass
class Target:
    """A fuzz target: ``run(data)`` and the seeds to start from."""

    name: str
    kind: str  # "parse" or "verify"
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    allowed: tuple[type[BaseException], ...] = (FormatError,)
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, data: bytes) -> None:
        """Run once; swallow the documented typed errors, let anything else escape."""
        with contextlib.suppress(self.allowed):
            self.run(data)


# -- seeds --------------------------------------------------------------------------------------
@functools.cache
def evidence_files() -> tuple[tuple[Path, bytes], ...]:
    """Every file of the shared corpus up to 1 MiB (empty when the corpus is absent)."""
    if not (EVIDENCE / "MANIFEST.json").is_file():
        return ()
    out = []
    for path in sorted(EVIDENCE.rglob("*")):
        if path.is_file() and path.stat().st_size <= _MAX_SEED and not path.name.startswith(
                "MANIFEST"):
            out.append((path, path.read_bytes()))
    return tuple(out)


@functools.cache
def emulated() -> dict[str, bytes]:
    """An emulated SEV-SNP guest's report and certificates (RSA-2048 roots, for speed)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from veritee.formats.sevsnp import Product
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

    machine = InsecureEmulatedSnpMachine.create(Product.MILAN, key_size=2048)
    from veritee.cli._demo import demo_image

    guest = machine.launch(simple_guest_image(demo_image()))
    report = guest.attestation_report(bytes(64))
    certs = machine.certificates()
    out = {"report": report}
    for name, cert in (("ark", certs.ark), ("ask", certs.ask), ("vcek", certs.vek)):
        assert cert is not None
        out[name] = cert.public_bytes(Encoding.PEM)
    return out


def _accepted_by(parse: Callable[[bytes], object], *, also: Iterable[bytes] = ()) -> list[bytes]:
    """The corpus files (and ``also``) that ``parse`` accepts: the seeds of a parse target."""
    seeds: list[bytes] = []
    for data in [d for _, d in evidence_files()] + list(also):
        try:
            parse(data)
        except Exception:  # noqa: S112 - a seed that does not parse is simply not a seed
            continue
        seeds.append(data)
    return seeds[:64] or [b"\x00" * 16]


def _times() -> list[datetime]:
    """Every evaluation time the manifests mention (verify contexts are tried at each)."""
    found = set()
    for name in ("MANIFEST.json", "MANIFEST-2.json"):
        p = EVIDENCE / name
        if p.is_file():
            for m in re.finditer(r'"evaluated_at": "([0-9T:+\-.Z]+)"', p.read_text()):
                try:
                    found.add(datetime.fromisoformat(m.group(1).replace("Z", "+00:00")))
                except ValueError:
                    continue
    return sorted(t if t.tzinfo else t.replace(tzinfo=UTC) for t in found)


# -- parse targets ------------------------------------------------------------------------------
def _coco_seeds() -> list[bytes]:
    """KBS Attestation messages (version byte + JSON) in the 0.1.0 and 0.4.0 shapes."""
    key = '{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"}'
    rsa = '{"kty":"RSA","alg":"RSA1_5","n":"AQAB","e":"AQAB"}'
    ev = '{"quote":"AAAA","attestation_report":"AAAA","token":[1,2]}'
    return [b"\x00" + ('{"tee-pubkey":' + rsa + ',"tee-evidence":' + json.dumps(ev)
                       + "}").encode(),
            b"\x04" + ('{"runtime-data":{"nonce":"bm9uY2U=","tee-pubkey":' + key + '},'
                       '"tee-evidence":{"primary_evidence":' + ev + ',"additional_evidence":'
                       '"{\\"nvidia\\":{}}"}}').encode()]


def _parse_targets() -> list[Target]:
    from veritee import _decode
    from veritee.collateral.intel import load_collateral_json
    from veritee.crypto import _x509, amd_certs
    from veritee.formats import (
        azure,
        cca,
        cose,
        eventlog,
        ima,
        intel,
        nitro,
        nvidia,
        psa,
        sealed,
        sevsnp,
        tpm,
        tsm,
    )

    def hcl(d: bytes) -> None:
        r = azure.HclReport.from_bytes(d)
        r.runtime_claims()

    def quote(d: bytes) -> None:
        q = intel.Quote.from_bytes(d, allow_nonzero_trailer=True)
        q.signed_bytes  # noqa: B018 - the properties the verifier reads
        cd = q.signature_data.qe.certification_data.pck_chain_bytes
        if cd:
            _x509.load_certificate_chain(cd, structure="pck_chain")

    def tcb_info(d: bytes) -> None:
        raw, _ = intel.signed_json_member(d, "tcbInfo")
        intel.TcbInfo.from_json(raw)

    def qe_identity(d: bytes) -> None:
        raw, _ = intel.signed_json_member(d, "enclaveIdentity")
        intel.EnclaveIdentity.from_json(raw)

    def log(d: bytes) -> None:
        ev = eventlog.EventLog.from_bytes(d)
        ev.replay_all()

    def pck_ext(d: bytes) -> None:
        intel.PckExtensions.from_der(d)

    def tpm_any(d: bytes) -> None:
        for fn in (tpm.TpmsAttest.from_bytes, tpm.TpmtSignature.from_bytes,
                   tpm.parse_tpm2b_public, tpm.parse_tpm2tools_pcrs,
                   tpm.parse_pcr_values_text):
            with contextlib.suppress(FormatError):
                fn(d)

    def x509_chain(d: bytes) -> None:
        _x509.load_certificate_chain(d, structure="fuzz")

    def crl(d: bytes) -> None:
        _x509.load_crl(d, structure="fuzz")

    def text(d: bytes) -> None:
        _decode.decode_binary_text(d, structure="fuzz", field="text")

    def js(d: bytes) -> None:
        _decode.load_json(d, structure="fuzz")

    def cb(d: bytes) -> None:
        _decode.load_cbor(d, structure="fuzz")

    def ima_ascii(d: bytes) -> None:
        ima.ImaLog.from_ascii(d)

    def nvat(d: bytes) -> None:
        nvidia.parse_nvat_evidence(d)

    def evidence(d: bytes) -> None:
        from veritee.attest import parse_evidence

        parse_evidence(d)

    def coco_attestation(d: bytes) -> None:
        # A KBS Attestation of the version its first byte picks, then its primary evidence
        # as each TEE's shape reads it (the /kbs/v0 front does both before any verification).
        from veritee.formats import coco

        versions = list(coco.PROTOCOL_VERSIONS.values())
        msg = coco.parse_attestation(d[1:], versions[d[0] % len(versions)] if d else versions[0])
        for shape in coco.TEE_SHAPES:
            with contextlib.suppress(FormatError):
                coco.primary_evidence(shape.names[0], msg.primary)
        coco.additional_evidence(msg.additional or "")

    def make(name: str, fn: Callable[[bytes], object], *extra_seeds: bytes,
             allowed: tuple[type[BaseException], ...] = (FormatError,), doc: str = "") -> Target:
        def run(d: bytes) -> None:
            fn(d)

        return Target(name, "parse", run, lambda: _accepted_by(fn, also=extra_seeds),
                      allowed=allowed, doc=doc)

    def emu(key: str) -> Callable[[], bytes]:
        return lambda: emulated()[key]

    targets = [
        make("sevsnp_report", sevsnp.AttestationReport.from_bytes),
        make("sevsnp_cert_table", sevsnp.CertTable.from_bytes),
        make("azure_hcl", hcl),
        make("tsm_report", tsm.TsmReport.from_bytes),
        make("intel_quote", quote, allowed=(FormatError, VerificationError),
             doc="VerificationError: an unsupported public key in the PCK chain"),
        make("intel_tcb_info", tcb_info),
        make("intel_qe_identity", qe_identity),
        make("intel_pck_extensions", pck_ext),
        make("intel_collateral_json", load_collateral_json, allowed=(ConfigError, FormatError,
                                                                     VerificationError)),
        make("eventlog", log),
        make("ima_binary", ima.ImaLog.from_binary),
        make("ima_ascii", ima_ascii),
        make("tpm_structures", tpm_any),
        make("nitro_document", nitro.NitroDocument.from_bytes),
        make("cose_sign1", cose.CoseSign1.from_bytes),
        make("psa_token", psa.PsaToken.from_bytes),
        make("cca_token", cca.CcaToken.from_bytes),
        make("nvidia_report", nvidia.GpuReport.from_bytes),
        make("nvat_evidence", nvat),
        make("sealed_header", sealed.SealedHeader.from_bytes),
        make("x509_chain", x509_chain, allowed=(FormatError, VerificationError),
             doc="VerificationError: a well-formed certificate with an unsupported key type"),
        make("x509_crl", crl),
        make("amd_certificates", amd_certs.load_certificates),
        make("decode_text", text),
        make("decode_json", js),
        make("decode_cbor", cb),
        make("parse_evidence", evidence),
        make("coco_attestation", coco_attestation, *_coco_seeds()),
    ]
    # The emulated platform's output seeds the SEV-SNP and certificate targets on a clean clone.
    by_name = {t.name: t for t in targets}
    for tname, key in (("sevsnp_report", "report"), ("x509_chain", "vcek"),
                       ("amd_certificates", "ark"), ("parse_evidence", "report")):
        t = by_name[tname]
        base = t.seeds
        t.seeds = functools.partial(lambda b, k: [*b(), emulated()[k]], base, key)
    del emu
    return targets


# -- verify targets -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    verify: Callable[[bytes], bytes]  # verifies; returns the signed bytes it accepted
    seed: bytes
    # The signed bytes as they lie in the evidence, when ``verify`` returns a re-encoding.
    region: Callable[[bytes], bytes] | None = None


def _verify_target(name: str, contexts: Callable[[], list[_Context]], doc: str) -> Target:
    @functools.cache
    def ctx() -> tuple[list[_Context], frozenset[bytes]]:
        found = contexts()
        genuine = frozenset(c.verify(c.seed) for c in found)
        return found, genuine

    def run(data: bytes) -> None:
        found, genuine = ctx()
        if not found or not data:
            return
        c = found[data[0] % len(found)]
        signed = c.verify(data[1:])
        if signed not in genuine:
            raise SignedBytesAccepted(f"{name}: accepted signed bytes of no genuine seed")

    def seeds() -> list[bytes]:
        found, _ = ctx()
        return [bytes([i]) + c.seed for i, c in enumerate(found)] or [b"\x00"]

    return Target(name, "verify", run, seeds, allowed=(VeriteeError,), doc=doc,
                  extra={"contexts": lambda: ctx()[0]})


def sweep(target: Target, xors: tuple[int, ...] = (0x01,)) -> dict[str, int]:
    """Flip every byte of the signed region of every seed of a verify target (XOR each of
    ``xors``) and verify each mutant: count the mutants, the typed refusals, and the accepted
    ones (must be 0). Any other exception escapes (a finding)."""
    counts = {"samples": 0, "mutants": 0, "refused": 0, "accepted": 0}
    for c in target.extra["contexts"]():
        signed = c.region(c.seed) if c.region is not None else c.verify(c.seed)
        start = c.seed.find(signed)
        if start < 0:  # the signed bytes are not contiguous in the evidence (re-encoded)
            continue
        counts["samples"] += 1
        for pos in range(start, start + len(signed)):
            for x in xors:
                mutant = bytearray(c.seed)
                mutant[pos] ^= x
                counts["mutants"] += 1
                try:
                    c.verify(bytes(mutant))
                except VeriteeError:
                    counts["refused"] += 1
                else:
                    counts["accepted"] += 1
    return counts


def _intel_contexts() -> list[_Context]:
    from veritee.collateral.intel import decode_quote
    from veritee.formats.intel import Quote
    from veritee.trust.intel import verify_quote

    out: list[_Context] = []
    for path, data in evidence_files():
        if path.suffix not in ("", ".dat", ".bin", ".hex", ".txt") and "quote" not in path.name:
            continue
        try:
            raw = decode_quote(data, source=str(path))
            Quote.from_bytes(raw, allow_nonzero_trailer=True)
        except Exception:  # noqa: S112 - not a quote
            continue
        for now in _times():
            def verify(d: bytes, now: datetime = now) -> bytes:
                v = verify_quote(Quote.from_bytes(d, allow_nonzero_trailer=True), None, now=now)
                return v.quote.signed_bytes

            try:
                verify(raw)
            except VeriteeError:
                continue
            out.append(_Context(verify, raw))
            break
    return out[:16]


def _nitro_contexts() -> list[_Context]:
    from veritee.formats.nitro import NitroDocument
    from veritee.trust.nitro import verify_document

    out: list[_Context] = []
    for _path, data in evidence_files():
        try:
            NitroDocument.from_bytes(data)
        except Exception:  # noqa: S112 - not a document
            continue
        times = _times() + [datetime(y, 1, 1, tzinfo=UTC) for y in (2020, 2022, 2024)]
        try:
            doc = NitroDocument.from_bytes(data)
            times.insert(0, doc.payload.timestamp)
        except Exception:  # noqa: S110 - fall back to the manifest times
            pass
        for now in times:
            def verify(d: bytes, now: datetime = now) -> bytes:
                return verify_document(d, now=now).document.sig_structure

            try:
                verify(data)
            except VeriteeError:
                continue
            out.append(_Context(verify, data,
                                region=lambda d: NitroDocument.from_bytes(d).payload.raw))
            break
    return out[:8]


def _sevsnp_contexts() -> list[_Context]:
    from veritee.attest import parse_evidence, verify_only
    from veritee.collateral.amd import load_paths
    from veritee.trust.roots import TrustAnchors

    out: list[_Context] = []
    emu = emulated()
    try:
        from veritee.crypto.amd_certs import load_certificates
        from veritee.trust.sevsnp import AmdCertificates

        ark = load_certificates(emu["ark"])[0]
        certs = AmdCertificates(ark=ark, ask=load_certificates(emu["ask"])[0],
                                vek=load_certificates(emu["vcek"])[0], crl=None)
        anchors = TrustAnchors.from_certificates(ark)

        def verify_emu(d: bytes) -> bytes:
            return verify_only(d, collateral=certs, anchors=anchors,
                               now=datetime.now(UTC)).report.signed_bytes

        verify_emu(emu["report"])
        out.append(_Context(verify_emu, emu["report"]))
    except VeriteeError:  # pragma: no cover - the emulator always verifies
        pass
    for path, data in evidence_files():
        try:
            parse_evidence(data)
        except Exception:  # noqa: S112 - not SEV-SNP evidence
            continue
        try:
            collateral = load_paths(path.parent)
        except VeriteeError:
            collateral = None
        for now in _times():
            def verify(d: bytes, now: datetime = now, col: Any = collateral) -> bytes:
                return verify_only(d, collateral=col, now=now).report.signed_bytes

            try:
                verify(data)
            except VeriteeError:
                continue
            out.append(_Context(verify, data))
            break
    return out[:12]


def _nvidia_contexts() -> list[_Context]:
    from veritee.formats.nvidia import GpuReport, parse_nvat_evidence
    from veritee.trust.nvidia import parse_cert_chain, verify_gpu_report

    reports: list[tuple[Path, bytes]] = []
    chains: list[bytes] = []
    for path, data in evidence_files():
        if "nvidia" not in path.parts:
            continue
        try:
            for ev in parse_nvat_evidence(data):
                reports.append((path, ev.report.to_bytes()))
                chains.append(ev.certificate_pem)
        except Exception:  # noqa: S110 - other files of the sample
            pass
        try:
            GpuReport.from_bytes(data)
            reports.append((path, data))
        except Exception:  # noqa: S110
            pass
        if b"-----BEGIN CERTIFICATE" in data:
            chains.append(data)
    out: list[_Context] = []
    for _path, rep in reports:
        if not rep:
            continue
        done = False
        for pem in chains:
            try:
                chain = parse_cert_chain(pem)
            except VeriteeError:
                continue
            for now in _times():
                def verify(d: bytes, now: datetime = now, chain: Any = chain) -> bytes:
                    v = verify_gpu_report(d, chain, now=now)
                    return v.report.signed_data

                try:
                    verify(rep)
                except VeriteeError:
                    continue
                out.append(_Context(verify, rep))
                done = True
                break
            if done:
                break
    return out[:6]


@functools.cache
def targets() -> dict[str, Target]:
    """Every target by name."""
    found = [
        *_parse_targets(),
        _verify_target("verify_intel_quote", _intel_contexts,
                       "Intel TDX/SGX quote: PCK chain to the pinned root, QE and quote "
                       "signatures"),
        _verify_target("verify_nitro", _nitro_contexts, "AWS Nitro document: COSE_Sign1 and "
                       "chain to the pinned AWS root"),
        _verify_target("verify_sevsnp", _sevsnp_contexts, "SEV-SNP report (bare, HCL, "
                       "configfs-tsm): VCEK/VLEK chain and report signature"),
        _verify_target("verify_nvidia", _nvidia_contexts, "NVIDIA SPDM report: device chain "
                       "to the pinned NVIDIA root and the report signature"),
    ]
    return {t.name: t for t in found}


def crash_inputs() -> list[tuple[str, Path]]:
    """Every kept crash input: ``tests/fuzz/crashes/<target>/<file>``."""
    if not CRASHES.is_dir():
        return []
    return [(d.name, f) for d in sorted(CRASHES.iterdir()) if d.is_dir()
            for f in sorted(d.iterdir()) if f.is_file()]
