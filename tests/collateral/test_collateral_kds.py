"""The KDS client against a fake KDS on loopback: URLs, caching, failures, and that fetched
collateral is verified like any other (a wrong root is still refused)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.attest import verify_only
from veritee.cli import main
from veritee.collateral.kds import KdsClient, vcek_url
from veritee.crypto.amd_certs import make_crl
from veritee.errors import CollateralError, VerificationError
from veritee.formats.sevsnp import AttestationReport, Product, TcbVersion
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def machine() -> InsecureEmulatedSnpMachine:
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048, now=NOW)
    return InsecureEmulatedSnpMachine(vendor, clock=NOW)


class FakeKds:
    """Serves one emulated chip's collateral the way AMD's KDS lays it out."""

    def __init__(self, machine: InsecureEmulatedSnpMachine) -> None:
        self.machine = machine
        self.requests: list[str] = []
        kds = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kds.requests.append(self.path)
                status, body = kds.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str) -> tuple[int, bytes]:
        m = self.machine
        parsed = urlparse(path)
        parts = parsed.path.strip("/").split("/")
        if parts[:3] != ["vcek", "v1", "Milan"] or len(parts) != 4:
            return 404, b""
        if parts[3] == "cert_chain":
            return 200, (m.vendor.ask.public_bytes(Encoding.PEM)
                         + m.vendor.ark.public_bytes(Encoding.PEM))
        if parts[3] == "crl":
            crl = make_crl(m.vendor.ark_key, m.vendor.ark, [], NOW - timedelta(days=1),
                           NOW + timedelta(days=7))
            return 200, crl.public_bytes(Encoding.DER)
        q = {k: int(v[0]) for k, v in parse_qs(parsed.query).items()}
        if parts[3] != m.chip_id.hex():
            return 404, b""
        tcb = TcbVersion(bootloader=q["blSPL"], tee=q["teeSPL"], snp=q["snpSPL"],
                         microcode=q["ucodeSPL"])
        return 200, m.vcek_certificate(tcb).public_bytes(Encoding.DER)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kds(machine: InsecureEmulatedSnpMachine) -> Iterator[FakeKds]:
    server = FakeKds(machine)
    yield server
    server.close()


def _report(machine: InsecureEmulatedSnpMachine) -> bytes:
    return machine.launch(simple_guest_image(b"k" * 4096)).attestation_report(bytes(64))


def test_vcek_url_matches_the_real_kds_layout() -> None:
    """go-sev-guest's sample: the KDS URL its test maps to vcek.testcer."""
    chip = bytes.fromhex("3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
                         "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d")
    url = vcek_url("https://kdsintf.amd.com", Product.MILAN, chip,
                   TcbVersion(bootloader=2, tee=0, snp=5, microcode=68))
    assert url == ("https://kdsintf.amd.com/vcek/v1/Milan/" + chip.hex()
                   + "?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68")
    turin = vcek_url("https://k", Product.TURIN, chip,
                     TcbVersion(fmc=1, bootloader=2, tee=3, snp=4, microcode=5))
    assert turin == (f"https://k/vcek/v1/Turin/{chip[:8].hex()}"
                     "?fmcSPL=1&blSPL=2&teeSPL=3&snpSPL=4&ucodeSPL=5")


def test_fetched_collateral_verifies_and_is_cached(machine: InsecureEmulatedSnpMachine,
                                                   kds: FakeKds, tmp_path: Path) -> None:
    report = _report(machine)
    client = KdsClient(kds.url, cache_dir=tmp_path, now=lambda: NOW)
    verified = verify_only(report, anchors=machine.anchors(), now=NOW, fetcher=client,
                           require_crl=True)
    assert verified.crl_checked
    first = len(kds.requests)
    assert first == 3  # chain, VCEK, CRL
    verify_only(report, anchors=machine.anchors(), now=NOW, fetcher=client, require_crl=True)
    assert len(kds.requests) == first, "certificates and the current CRL come from the cache"


def test_fetched_chain_is_not_trusted_blindly(machine: InsecureEmulatedSnpMachine,
                                              kds: FakeKds, tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as exc:
        verify_only(_report(machine), now=NOW, fetcher=KdsClient(kds.url, cache_dir=tmp_path))
    assert exc.value.code == "sevsnp.chain.ark_untrusted"


def test_unknown_chip_is_collateral_error(kds: FakeKds, tmp_path: Path) -> None:
    other = InsecureEmulatedSnpMachine(EmulatedAmdVendor.generate(Product.MILAN, key_size=2048,
                                                                  now=NOW), clock=NOW)
    with pytest.raises(CollateralError, match="HTTP 404"):
        verify_only(_report(other), anchors=other.anchors(), now=NOW,
                    fetcher=KdsClient(kds.url, cache_dir=tmp_path))


def test_unreachable_kds_is_collateral_error(machine: InsecureEmulatedSnpMachine) -> None:
    with pytest.raises(CollateralError):
        verify_only(_report(machine), anchors=machine.anchors(), now=NOW,
                    fetcher=KdsClient("http://127.0.0.1:9", timeout=2))


def test_v2_report_needs_a_product(machine: InsecureEmulatedSnpMachine, kds: FakeKds) -> None:
    report = AttestationReport.from_bytes(machine.launch(simple_guest_image(b"k" * 4096))
                                          .attestation_report(bytes(64), report_version=2))
    with pytest.raises(CollateralError, match="product"):
        KdsClient(kds.url).collateral_for(report)


def test_cli_fetch(machine: InsecureEmulatedSnpMachine, kds: FakeKds, tmp_path: Path) -> None:
    (tmp_path / "report.bin").write_bytes(_report(machine))
    (tmp_path / "ark.pem").write_bytes(machine.vendor.ark.public_bytes(Encoding.PEM))
    args = ["verify", str(tmp_path / "report.bin"), "--at", NOW.isoformat(), "--trust-root",
            str(tmp_path / "ark.pem")]
    assert main(args) == 5
    assert main([*args, "--fetch", "--kds-url", kds.url, "--kds-cache",
                 str(tmp_path / "cache")]) == 0


def test_oversized_kds_response_is_cut_off_not_buffered() -> None:
    import httpx

    sent = []

    def huge(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            for _ in range(64):  # 4 MiB in 64 KiB chunks; reading stops after 1 MiB
                sent.append(1)
                yield b"\x00" * 65536

        return httpx.Response(200, content=body())

    client = KdsClient("https://kds.example", client=httpx.Client(transport=httpx.MockTransport(
        huge)))
    with pytest.raises(CollateralError, match="larger than"):
        client.cert_chain(Product.MILAN)
    assert len(sent) < 64
