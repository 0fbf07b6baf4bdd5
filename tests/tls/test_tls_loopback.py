"""Attested TLS over loopback (127.0.0.1 only): accepted guest served, wrong guest refused.

The machines run on the real clock here: OpenSSL checks the pinned certificate's validity
against the system time in the httpx path. Every socket has a timeout; servers stop on exit.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from veritee.crypto.certs import KeyType, create_ca, generate_private_key
from veritee.errors import PolicyRejected, VerificationError
from veritee.formats.sevsnp import Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)
from veritee.policy.sevsnp import SevSnpPolicy
from veritee.tls import (
    AttestedHttpsServer,
    attested_httpx_client,
    connect_attested,
    pinned_context,
)
from veritee.trust.sevsnp import AmdCertificates

TIMEOUT = 5.0
GOOD_IMAGE = bytes(range(256)) * 16 * 4
BAD_IMAGE = b"\xcc" * 4096 * 4


@pytest.fixture(scope="module")
def machine() -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(EmulatedAmdVendor.generate(Product.MILAN, key_size=2048))


@pytest.fixture(scope="module")
def good(machine: InsecureEmulatedSnpMachine) -> EmulatedSnpGuest:
    return machine.launch(simple_guest_image(GOOD_IMAGE))


@pytest.fixture(scope="module")
def bad(machine: InsecureEmulatedSnpMachine) -> EmulatedSnpGuest:
    return machine.launch(simple_guest_image(BAD_IMAGE))


@pytest.fixture(scope="module")
def policy(good: EmulatedSnpGuest) -> SevSnpPolicy:
    return SevSnpPolicy(policy_id="good-workload", measurements=frozenset({good.measurement}))


def _crl(machine: InsecureEmulatedSnpMachine) -> AmdCertificates:
    """The relying party's own revocation collateral (the certificate carries no CRL)."""
    return AmdCertificates(crl=machine.vendor.crl(datetime.now(UTC)))


def _serve(guest: EmulatedSnpGuest, **kw: object) -> AttestedHttpsServer:
    return AttestedHttpsServer.in_guest(guest, now=datetime.now(UTC), io_timeout=TIMEOUT,
                                        **kw)  # type: ignore[arg-type]


@pytest.fixture
def good_server(good: EmulatedSnpGuest) -> Iterator[AttestedHttpsServer]:
    with _serve(good) as srv:
        yield srv


def _get(conn_sock: ssl.SSLSocket) -> bytes:
    conn_sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    chunks = []
    for _ in range(100):  # bounded: the response is small
        chunk = conn_sock.recv(4096)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_server_listens_on_loopback_only(good_server: AttestedHttpsServer) -> None:
    host, port = good_server.address
    assert host == "127.0.0.1" and port > 0


@pytest.mark.parametrize("kt", [KeyType.P256, KeyType.ED25519, KeyType.RSA3072])
def test_accepted_guest_is_served(kt: KeyType, good: EmulatedSnpGuest,
                                  machine: InsecureEmulatedSnpMachine,
                                  policy: SevSnpPolicy) -> None:
    with _serve(good, key_type=kt) as srv:
        host, port = srv.address
        with connect_attested(host, port, policy=policy, anchors=machine.anchors(),
                              collateral=_crl(machine),
                              timeout=TIMEOUT) as conn:
            assert conn.appraisal.accepted
            assert conn.sock.version() == "TLSv1.3"
            assert conn.certificate == srv.certificate
            response = _get(conn.sock)
        assert response.startswith(b"HTTP/1.1 200")
        assert response.endswith(b"hello from an attested guest\n")
        assert srv.requests_served == 1


def test_guest_with_wrong_measurement_is_refused(bad: EmulatedSnpGuest,
                                                 machine: InsecureEmulatedSnpMachine,
                                                 policy: SevSnpPolicy) -> None:
    """Same genuine (emulated) machine, different workload: refused before any request."""
    with _serve(bad) as srv:
        host, port = srv.address
        with pytest.raises(PolicyRejected) as exc:
            connect_attested(host, port, policy=policy, anchors=machine.anchors(),
                             collateral=_crl(machine),
                             timeout=TIMEOUT)
        assert exc.value.appraisal.codes() == ["sevsnp.measurement.mismatch"]
        srv.stop()  # joins the serving thread, so the count is final
        assert srv.requests_served == 0  # not one request byte reached the refused guest


def test_httpx_client_refuses_wrong_measurement(bad: EmulatedSnpGuest,
                                                machine: InsecureEmulatedSnpMachine,
                                                policy: SevSnpPolicy) -> None:
    with _serve(bad) as srv:
        with pytest.raises(PolicyRejected):
            attested_httpx_client(srv.url, policy=policy, anchors=machine.anchors(),
                                  collateral=_crl(machine),
                                  timeout=TIMEOUT)
        srv.stop()
        assert srv.requests_served == 0


def test_guest_of_an_untrusted_root_is_refused(good_server: AttestedHttpsServer,
                                               policy: SevSnpPolicy) -> None:
    host, port = good_server.address
    with pytest.raises(VerificationError) as exc:
        connect_attested(host, port, policy=policy, timeout=TIMEOUT)  # AMD roots only
    assert exc.value.code == "sevsnp.chain.ark_untrusted"


def test_httpx_client_is_pinned_to_the_attested_certificate(
        good: EmulatedSnpGuest, machine: InsecureEmulatedSnpMachine,
        policy: SevSnpPolicy, good_server: AttestedHttpsServer) -> None:
    client, appraisal = attested_httpx_client(good_server.url, policy=policy,
                                              anchors=machine.anchors(),
                                              collateral=_crl(machine), timeout=TIMEOUT)
    assert appraisal.accepted
    with client:
        r = client.get("/")
        assert r.status_code == 200 and r.text == "hello from an attested guest\n"
        assert client.get("/missing").status_code == 404
    # Another server (another key, even in the same good guest) does not match the pin.
    with _serve(good) as other:
        pinned = httpx.Client(base_url=other.url, timeout=TIMEOUT,
                              verify=pinned_context(good_server.certificate))
        with pinned, pytest.raises(httpx.ConnectError):
            pinned.get("/")
        other.stop()
        assert other.requests_served == 0


def test_ca_signed_attested_server(good: EmulatedSnpGuest, machine: InsecureEmulatedSnpMachine,
                                   policy: SevSnpPolicy) -> None:
    ca = create_ca(generate_private_key(KeyType.P256), "CN=workload CA", now=datetime.now(UTC))
    with _serve(good, ca=ca) as srv:
        host, port = srv.address
        with connect_attested(host, port, policy=policy, anchors=machine.anchors(),
                              collateral=_crl(machine),
                              ca=ca.certificate, timeout=TIMEOUT) as conn:
            assert conn.certificate.issuer == ca.certificate.subject
            checks = {f.code: f.outcome.value for f in conn.appraisal.verification}
            assert checks["ratls.certificate.signature"] == "pass"


def test_plain_tls_server_without_evidence_is_refused(policy: SevSnpPolicy,
                                                      machine: InsecureEmulatedSnpMachine
                                                      ) -> None:
    from veritee.crypto.certs import self_signed_leaf

    key = generate_private_key(KeyType.P256)
    cert = self_signed_leaf(key, "CN=impostor", now=datetime.now(UTC),
                            ip_addresses=["127.0.0.1"])
    with AttestedHttpsServer(cert, key, io_timeout=TIMEOUT) as srv:
        host, port = srv.address
        with pytest.raises(VerificationError) as exc:
            connect_attested(host, port, policy=policy, anchors=machine.anchors(),
                             collateral=_crl(machine),
                             timeout=TIMEOUT)
        assert exc.value.code == "ratls.evidence.missing"
        srv.stop()
        assert srv.requests_served == 0


def test_attacker_certificate_embedding_a_genuine_attested_certificate_is_refused(
        good: EmulatedSnpGuest, machine: InsecureEmulatedSnpMachine,
        policy: SevSnpPolicy) -> None:
    """The attacker's own certificate (its key signs the handshake) carries the PEM text of
    the genuine guest's attested certificate in an extension: the verifier must check the
    certificate the peer presented, not a certificate found inside its bytes."""
    from cryptography import x509

    from veritee.crypto.certs import certificate_pem, self_signed_leaf
    from veritee.ratls import issue_attested_certificate

    now = datetime.now(UTC)
    genuine = issue_attested_certificate(good, generate_private_key(KeyType.P256), now=now)
    attacker_key = generate_private_key(KeyType.P256)
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    smuggled = x509.Extension(oid, False, x509.UnrecognizedExtension(
        oid, b"\n" + certificate_pem(genuine)))
    attacker = self_signed_leaf(attacker_key, "CN=attacker", now=now, extensions=[smuggled])
    with AttestedHttpsServer(attacker, attacker_key, io_timeout=TIMEOUT) as srv:
        host, port = srv.address
        with pytest.raises(VerificationError):
            connect_attested(host, port, policy=policy, anchors=machine.anchors(),
                             collateral=_crl(machine), timeout=TIMEOUT)
        assert srv.requests_served == 0
