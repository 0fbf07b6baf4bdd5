"""``veritee demo``: the whole attestation flow on an emulated SEV-SNP machine, step by step.

Attester side: an emulated AMD vendor and chip, a confidential VM launched from an image (its
launch digest computed page by page), a guest key pair, and a report bound to the verifier's
fresh nonce and that key. Verifier side: the same ``attest.verify_evidence`` that checks real
AMD evidence, with the emulated root passed explicitly, and a policy. Then the attacks a
verifier must stop: a replayed nonce, a tampered report, a debug guest, an untrusted root.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.attest import bind_report_data, verify_evidence
from veritee.errors import PolicyRejected, VerificationError
from veritee.formats.sevsnp import AttestationReport, GuestPolicy, Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedSnpGuest, InsecureEmulatedSnpMachine
from veritee.policy.sevsnp import SevSnpPolicy

__all__ = ["demo_image", "run_demo", "run_demo_json"]


def demo_image() -> bytes:
    """A deterministic stand-in for guest firmware: 16 pages, so its digest is reproducible."""
    pages = [hashlib.sha512(b"veritee demo firmware page %d" % i).digest() * 64
             for i in range(16)]
    return b"".join(pages)


class _Printer:
    def __init__(self) -> None:
        self.n = 0
        self.t0 = time.perf_counter()

    def step(self, text: str) -> None:
        self.n += 1
        print(f"\n[{self.n}] {text}")

    def info(self, text: str) -> None:
        print(f"    {text}")


def run_demo(*, product: str = "Milan", key_size: int = 4096, tee: str = "snp") -> int:
    """Run the demo; return 0 when every expected outcome happened, else 1.

    ``tee`` ``tdx`` or ``sgx`` runs the Intel flow (``veritee.cli._demo_intel``) instead,
    ``tpm`` the swtpm flow (``veritee.cli._demo_tpm``).
    """
    if tee in ("tdx", "sgx"):
        from veritee.cli._demo_intel import run_demo_intel

        return run_demo_intel(tee)
    if tee == "tpm":
        from veritee.cli._demo_tpm import run_demo_tpm

        return run_demo_tpm()
    out = _Printer()
    prod = Product(product)
    ok = True

    out.step(f"Emulated AMD vendor: generating an ARK and ASK (RSA-{key_size}, RSASSA-PSS "
             "SHA-384) - INSECURE, for development only")
    machine = InsecureEmulatedSnpMachine.create(prod, key_size=key_size)
    out.info(f"ARK subject: {machine.vendor.ark.subject.rfc4514_string()}")
    ark_der = machine.vendor.ark.public_bytes(Encoding.DER)
    out.info(f"ARK SHA-256: {hashlib.sha256(ark_der).hexdigest()} (trusted only explicitly)")

    out.step(f"Emulated {prod} chip with its secure processor")
    out.info(f"CHIP_ID:      {machine.chip_id.hex()[:32]}...")
    out.info(f"firmware TCB: {machine.tcb}")
    vcek = machine.vcek_certificate()
    out.info(f"VCEK (derived from chip secret + TCB) certified: {vcek.subject.rfc4514_string()}")

    out.step("Host launches a confidential VM (SNP_LAUNCH_START/UPDATE/FINISH)")
    image = simple_guest_image(demo_image())
    policy_bits = GuestPolicy(smt=True, abi_major=1, abi_minor=55)
    guest = machine.launch(image, policy=policy_bits, vcpus=2)
    out.info(f"pages measured: {sum(r.length for r in image.regions) // 4096} + 2 VMSAs")
    out.info(f"launch MEASUREMENT: {guest.measurement.hex()}")
    out.info(f"guest policy: debug={policy_bits.debug} smt={policy_bits.smt} "
             f"migrate_ma={policy_bits.migrate_ma}")

    out.step("Verifier sends a fresh nonce; the guest makes a P-384 key pair")
    nonce = os.urandom(32)
    guest_key = ec.generate_private_key(ec.SECP384R1())
    report_data = bind_report_data(nonce, guest_key.public_key())
    out.info(f"nonce: {nonce.hex()}")
    out.info(f"REPORT_DATA = SHA-512(nonce || guest public key) = {report_data.hex()[:32]}...")

    out.step("Guest asks its secure processor for a report (MSG_REPORT_REQ at VMPL0)")
    evidence = guest.attestation_report(report_data, vmpl=0)
    report = AttestationReport.from_bytes(evidence)
    out.info(f"ATTESTATION_REPORT v{report.version}, {len(evidence)} bytes, signed by the "
             f"VCEK for REPORTED_TCB {report.reported_tcb}")

    out.step("Verifier: parse -> verify (signature, VCEK->ASK->ARK chain, VCEK/TCB binding) "
             "-> appraise")
    policy = SevSnpPolicy(policy_id="demo", measurements=frozenset({guest.measurement}),
                          report_data=report_data)
    now = datetime.now(UTC)
    appraisal = verify_evidence(evidence, policy=policy, collateral=machine.certificates(),
                                anchors=machine.anchors(), now=now)
    for line in appraisal.to_text().splitlines()[1:]:
        out.info(line)

    out.step("Attacks the verifier must stop")
    attacks = _attacks(machine, guest, evidence, policy=policy, nonce=nonce, key=guest_key,
                       now=now)
    for name, outcome, expected in attacks:
        mark = "stopped" if expected else "NOT STOPPED"
        ok &= expected
        out.info(f"{name}: {mark} ({outcome})")

    out.step("Key broker: the verifier service (on loopback) releases a secret only to an "
             "attested guest")
    ok &= _key_broker(out, machine, guest)

    out.step("Isolation: a malicious hypervisor remaps a guest page (emulated memory model; "
             "a careful and a naive SEV-SNP guest)")
    from veritee.platform.emulated.isolation import demo_lines

    for line in demo_lines():
        out.info(line)

    elapsed = time.perf_counter() - out.t0
    print(f"\nresult: {'OK' if ok else 'FAILED'} ({elapsed:.1f} s)")
    return 0 if ok else 1


def run_demo_json(*, product: str = "Milan", key_size: int = 4096, tee: str = "snp") -> int:
    """Run the demo and print it as one JSON document on stdout (``--format json``): its
    steps (number, title, lines), ``ok``, ``elapsed_s`` and, if a step failed, ``error``.

    The flows print their steps as they go (``[n] title`` then indented lines, as a person
    reads them); that text is captured and structured here, so the three flows (SEV-SNP,
    Intel, TPM) share one JSON shape without a second code path each.
    """
    import contextlib
    import io
    import json
    import re
    import sys

    from veritee.cli import EXIT_CODES, exit_code_for
    from veritee.errors import VeriteeError

    buffer = io.StringIO()
    error: dict[str, object] | None = None
    try:
        with contextlib.redirect_stdout(buffer):
            code = run_demo(product=product, key_size=key_size, tee=tee)
    except VeriteeError as exc:
        code = exit_code_for(exc)
        error = {"message": str(exc), "exit_code": code, "exit_meaning": EXIT_CODES[code]}
        if isinstance(getattr(exc, "code", None), str):
            error["code"] = exc.code  # type: ignore[attr-defined]
        print(f"veritee: {exc}", file=sys.stderr)
    steps: list[dict[str, object]] = []
    doc: dict[str, object] = {"tee": tee, "steps": steps}
    for line in buffer.getvalue().splitlines():
        step = re.fullmatch(r"\[(\d+)\] (.*)", line)
        result = re.fullmatch(r"result: (\w+) \(([\d.]+) s\)", line)
        if step:
            steps.append({"step": int(step.group(1)), "title": step.group(2), "lines": []})
        elif result:
            doc["elapsed_s"] = float(result.group(2))
        elif line.strip() and steps:
            lines = steps[-1]["lines"]
            assert isinstance(lines, list)
            lines.append(line.strip())
    doc["ok"] = code == 0
    if error is not None:
        doc["error"] = error
    print(json.dumps(doc, indent=2))
    return code


def _attacks(machine: InsecureEmulatedSnpMachine, guest: object, evidence: bytes, *,
             policy: SevSnpPolicy, nonce: bytes, key: ec.EllipticCurvePrivateKey,
             now: datetime) -> list[tuple[str, str, bool]]:
    from veritee.trust.roots import TrustAnchors

    results: list[tuple[str, str, bool]] = []

    def attempt(name: str, data: bytes, pol: SevSnpPolicy, anchors: TrustAnchors) -> None:
        try:
            verify_evidence(data, policy=pol, collateral=machine.certificates(),
                            anchors=anchors, now=now)
        except PolicyRejected as exc:
            results.append((name, "policy: " + ", ".join(exc.appraisal.codes()), True))
        except VerificationError as exc:
            results.append((name, exc.code, True))
        else:
            results.append((name, "accepted", False))

    fresh = bind_report_data(os.urandom(32), key.public_key())
    from dataclasses import replace

    attempt("replayed report against a new nonce", evidence, replace(policy, report_data=fresh),
            machine.anchors())
    tampered = bytearray(evidence)
    tampered[0x90] ^= 0x01  # one bit of MEASUREMENT
    attempt("one flipped bit in MEASUREMENT", bytes(tampered), policy, machine.anchors())
    attempt("emulated root not passed (genuine AMD roots only)", evidence, policy,
            TrustAnchors.amd())
    from veritee.platform.emulated.snp import EmulatedSnpGuest

    assert isinstance(guest, EmulatedSnpGuest)
    dbg = machine.launch(simple_guest_image(demo_image()),
                         policy=GuestPolicy(smt=True, debug=True), vcpus=2)
    dbg_data = bind_report_data(nonce, key.public_key())
    attempt("debug guest under the default policy", dbg.attestation_report(dbg_data),
            replace(policy, measurements=frozenset({dbg.measurement}), report_data=dbg_data),
            machine.anchors())
    return results


def _key_broker(out: _Printer, machine: InsecureEmulatedSnpMachine,
                guest: EmulatedSnpGuest) -> bool:
    """Run the service in-process on 127.0.0.1 and do the whole RATS exchange against it."""
    import base64
    import tempfile
    from pathlib import Path

    import httpx

    from veritee.client import AttesterClient, ServiceRefused
    from veritee.service import MasterKey, Settings, create_app
    from veritee.service.audit import verify_chain
    from veritee.service.core import create_admin_token
    from veritee.service.server import LoopbackServer
    from veritee.service.storage import open_store

    secret = b"model decryption key 0x5eed"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'kbs.db'}"
        store = open_store(url)
        settings = Settings(database_url=url, dev_mode=True, key_source="emulated",
                            emulated_machine_dir=tmp)
        app = create_app(settings, master_key=MasterKey.generate(), anchors=machine.anchors(),
                         store=store)
        _, admin = create_admin_token(store, "demo", "admin")
        with LoopbackServer(app) as server, httpx.Client(timeout=10) as http:
            out.info(f"service: {server.url} (SQLite, EAR tokens signed ES256, JWE release)")
            r = http.put(f"{server.url}/v1/admin/resources/apps/demo/model-key",
                         headers={"Authorization": f"Bearer {admin}"},
                         json={"secret": base64.b64encode(secret).decode(),
                               "policy": {"measurements": [guest.measurement.hex()]}})
            r.raise_for_status()
            out.info("admin: resource apps/demo/model-key, released only to this measurement")
            with AttesterClient(server.url, guest, dev_mode=True) as client:
                passport = client.attest()
                out.info(f"guest: challenge -> evidence -> EAR token, status {passport.status}")
                got = client.get_resource("apps/demo/model-key", passport)
            out.info(f"guest: secret decrypted with its ephemeral key: {got!r}")
            other = machine.launch(simple_guest_image(demo_image()[::-1]))
            try:
                with AttesterClient(server.url, other, dev_mode=True) as client:
                    client.get_resource("apps/demo/model-key", client.attest())
                refused = "NOT REFUSED"
            except ServiceRefused as exc:
                refused = f"refused ({exc.status}, {exc.code})"
            out.info(f"a guest with another measurement: {refused}")
        with store.transaction(write=False) as tx:
            chain = verify_chain(tx.audit_rows(), store.integrity)
        store.close()
        out.info(f"audit log: {chain.entries} entries, hash chain "
                 f"{'intact' if chain.ok else 'BROKEN'}")
    return got == secret and refused.startswith("refused") and chain.ok
