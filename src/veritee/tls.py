"""An attested TLS channel: a server in a TEE presents an attested certificate; the client
accepts it only if the certificate's evidence verifies and appraises under its policy.

Why checking the certificate *after* the handshake, with ``CERT_NONE``, is sound
-------------------------------------------------------------------------------
The client disables OpenSSL's chain/hostname checks (there is no Web PKI chain to check:
trust comes from the evidence) but OpenSSL still runs the handshake's *key* checks. In TLS
1.3 (the only version allowed here, RFC 8446 section 4.4.3) the server signs the handshake
transcript in CertificateVerify with the private key of the certificate it sent, and the
client verifies that signature before the handshake completes -- ``CERT_NONE`` does not skip
it. So once :func:`connect_attested` holds a connected socket, the peer has proved possession
of the private key whose SubjectPublicKeyInfo is in the certificate. The evidence in that
certificate binds exactly that SPKI (REPORT_DATA = SHA-512(SPKI), see :mod:`veritee.ratls`),
so the peer is the attested TEE (or something the TEE gave its key to). The client verifies
the certificate *before writing a single byte of request data*, and closes the connection on
any failure. The session keys come from the ephemeral (EC)DHE exchange authenticated by that
signature, so nobody without the key can read or alter the channel.

The peer may run in any TEE whose scheme is registered (SEV-SNP, TDX, SGX ...): the
certificate's evidence names its scheme, and :func:`~veritee.ratls.verify_attested_certificate`
verifies it through the registry. Who is accepted is the caller's policy (the scheme's policy
type, or a mapping from scheme name to policy), and it must pin the workload: a policy that
pins no launch identity (SEV-SNP MEASUREMENT, ID/author key or HOST_DATA; TDX MRTD or an
RTMR; SGX MRENCLAVE or MRSIGNER) would accept any genuine TEE of that kind (an attacker's own
cloud VM included), so every entry point refuses it with ConfigError before connecting.

What it does not give: freshness (the evidence has no verifier nonce; the verifier bounds
staleness with ``max_age``, default :data:`~veritee.ratls.DEFAULT_MAX_AGE`, whatever validity
the attester chose) and protection if the TEE leaks its key.

For httpx, :func:`attested_httpx_client` verifies a server once with :func:`connect_attested`,
then pins that exact certificate (the only trust anchor of the returned client's context, with
X509_V_FLAG_PARTIAL_CHAIN so a leaf can be the anchor): every later connection must present
the same certificate, hence the same attested key.

The server (:class:`AttestedHttpsServer`) is a small threaded ``http.server`` on a loopback
address with an ephemeral port by default, for tests, demos and the emulated platform.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.crypto.certs import (
    CertificateAuthority,
    KeyType,
    PrivateKey,
    certificate_pem,
    generate_private_key,
    private_key_pem,
)
from veritee.errors import ConfigError, PlatformError, VerificationError
from veritee.policy import Appraisal
from veritee.ratls import (
    DEFAULT_MAX_AGE,
    Attester,
    SnpAttester,
    issue_attested_certificate,
    verify_attested_certificate,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import httpx

__all__ = [
    "AttestedConnection",
    "AttestedHttpsServer",
    "attested_httpx_client",
    "client_context",
    "connect_attested",
    "pinned_context",
    "require_workload_pin",
    "server_context",
    "verify_peer",
]

DEFAULT_TIMEOUT = 10.0  # seconds, for connect, handshake and each read


def server_context(certificate: x509.Certificate, key: PrivateKey,
                   chain: Sequence[x509.Certificate] = ()) -> ssl.SSLContext:
    """A TLS 1.3 server context presenting ``certificate`` (and ``chain``) with ``key``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # ssl can only load keys from files: keep them off disk where the OS allows (memfd).
    with _pem_file(certificate_pem(certificate) + b"".join(certificate_pem(c) for c in chain)
                   ) as cert_path, _pem_file(private_key_pem(key)) as key_path:
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd = memfd("veritee-tls", 0)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as tmp:  # pragma: no cover - non-Linux fallback
        path = Path(tmp) / "material.pem"
        path.touch(0o600)
        path.write_bytes(data)
        yield str(path)


def client_context() -> ssl.SSLContext:
    """TLS 1.3 client context that leaves the certificate decision to :func:`verify_peer`.

    ``CERT_NONE`` disables chain and hostname checks only; the server's CertificateVerify
    signature with the certificate's key is still verified by OpenSSL (see module docstring).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def pinned_context(certificate: x509.Certificate) -> ssl.SSLContext:
    """TLS 1.3 client context trusting exactly ``certificate`` (an already-verified peer)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # identity is the pinned key, not a name
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the anchor
    ctx.load_verify_locations(cadata=certificate.public_bytes(Encoding.DER))
    return ctx


# The policy fields, per scheme policy type, that pin a launch identity (SEV-SNP
# SevSnpPolicy, Intel TdxPolicy / SgxPolicy, TpmPolicy's PCR reference values). TDX MROWNER /
# MRCONFIGID are left out: whoever launches a TD chooses them, so they do not say which code
# runs.
_PINS = ("measurements", "id_key_digests", "author_key_digests", "host_data",
         "mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrenclave", "mrsigner", "pcrs")


def _pins(policy: Any) -> bool:
    """True when ``policy`` sets a reference value for one of the launch-identity fields
    (an empty set or mapping pins nothing: TpmPolicy's ``pcrs`` defaults to ``{}``)."""
    for name in _PINS:
        value = getattr(policy, name, None)
        if value is None or (isinstance(value, Mapping | AbstractSet) and not value):
            continue
        return True
    return False


def require_workload_pin(policy: Any) -> Any:
    """Return ``policy`` if it pins the workload (SEV-SNP measurements, ID or author key
    digests, or HOST_DATA; TDX MRTD or RTMRs; SGX MRENCLAVE or MRSIGNER; TPM PCRs), else raise
    ConfigError: without a pin any genuine TEE of that kind passes. A mapping from scheme name
    to policy must pin every scheme it names."""
    values = list(policy.values()) if isinstance(policy, Mapping) else [policy]
    if not values or not all(_pins(p) for p in values):
        raise ConfigError("attested TLS needs a policy that pins the workload (SEV-SNP "
                          "measurements, id_key_digests, author_key_digests or host_data; "
                          "TDX mrtd or rtmr0-3; SGX mrenclave or mrsigner; TPM pcrs): without "
                          "a pin "
                          "any genuine TEE, an attacker's own included, is accepted")
    return policy


@dataclass(frozen=True)
class _Verifier:
    policy: Any
    collateral: Any
    anchors: Any
    now: datetime | None
    ca: x509.Certificate | None
    max_age: timedelta

    def __call__(self, cert: x509.Certificate) -> Appraisal:
        return verify_attested_certificate(cert, policy=self.policy, collateral=self.collateral,
                                           anchors=self.anchors, now=self.now, ca=self.ca,
                                           max_age=self.max_age)


def verify_peer(sock: ssl.SSLSocket, *, policy: Any = None,
                collateral: Any = None,
                anchors: Any = None, now: datetime | None = None,
                ca: x509.Certificate | None = None,
                max_age: timedelta = DEFAULT_MAX_AGE) -> tuple[x509.Certificate, Appraisal]:
    """Verify the certificate the peer of a *completed* TLS 1.3 handshake presented.

    ``policy`` must pin the workload (:func:`require_workload_pin`). Raises like
    :func:`~veritee.ratls.verify_attested_certificate`; does not close ``sock``.
    """
    pinned = require_workload_pin(policy)
    if sock.version() != "TLSv1.3":
        raise VerificationError("tls.version", f"got {sock.version()}, want TLSv1.3")
    der = sock.getpeercert(binary_form=True)
    if not der:
        raise VerificationError("tls.peer.no_certificate", "the peer sent no certificate")
    # getpeercert(binary_form=True) is DER: parse it as DER only, never search it for PEM
    # (the peer's certificate can carry another certificate's PEM text in an extension).
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise VerificationError("tls.peer.certificate",
                                f"the peer's certificate is not DER ({exc})") from None
    return cert, _Verifier(pinned, collateral, anchors, now, ca, max_age)(cert)


@dataclass
class AttestedConnection:
    """A TLS connection whose peer's attested certificate verified and was accepted."""

    sock: ssl.SSLSocket
    certificate: x509.Certificate
    appraisal: Appraisal

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> AttestedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_attested(host: str, port: int, *, policy: Any = None,
                     collateral: Any = None,
                     anchors: Any = None, now: datetime | None = None,
                     ca: x509.Certificate | None = None,
                     timeout: float = DEFAULT_TIMEOUT,
                     max_age: timedelta = DEFAULT_MAX_AGE) -> AttestedConnection:
    """Connect, handshake, and verify the server's attested certificate before any data.

    ``policy`` must pin the workload (checked before connecting). On any verification
    failure the connection is closed and the error re-raised, so no request byte ever
    reaches an unaccepted server.
    """
    require_workload_pin(policy)
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        sock = client_context().wrap_socket(raw, server_hostname=None)
    except BaseException:
        raw.close()
        raise
    try:
        cert, appraisal = verify_peer(sock, policy=policy, collateral=collateral,
                                      anchors=anchors, now=now, ca=ca, max_age=max_age)
    except BaseException:
        sock.close()
        raise
    return AttestedConnection(sock=sock, certificate=cert, appraisal=appraisal)


def attested_httpx_client(base_url: str, *, policy: Any = None,
                          collateral: Any = None,
                          anchors: Any = None, now: datetime | None = None,
                          ca: x509.Certificate | None = None,
                          timeout: float = DEFAULT_TIMEOUT,
                          max_age: timedelta = DEFAULT_MAX_AGE,
                          **client_kwargs: Any) -> tuple[httpx.Client, Appraisal]:
    """An ``httpx.Client`` for ``base_url`` that talks only to the attested, accepted server.

    Attests first (:func:`connect_attested`; nothing is sent), then returns a client pinned to
    that certificate, with its appraisal. Raises on rejection.
    """
    import httpx

    require_workload_pin(policy)
    url = httpx.URL(base_url)
    if url.scheme != "https" or url.host is None:
        raise ConfigError(f"base_url: got {base_url!r}, want https://host:port")
    with connect_attested(url.host, url.port or 443, policy=policy, collateral=collateral,
                          anchors=anchors, now=now, ca=ca, timeout=timeout,
                          max_age=max_age) as conn:
        cert, appraisal = conn.certificate, conn.appraisal
    client = httpx.Client(base_url=base_url, verify=pinned_context(cert), timeout=timeout,
                          **client_kwargs)
    return client, appraisal


# -- server ----------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    """Serves fixed responses from ``server.routes`` (path -> body); 404 otherwise."""

    server: _TLSHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.count_request()
        body = self.server.routes.get(self.path.split("?", 1)[0])
        status = 200 if body is not None else 404
        payload = body if body is not None else b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test server should not write to stderr per request."""


class _TLSHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server that does each TLS handshake in the request's own thread."""

    daemon_threads = True
    routes: Mapping[str, bytes]
    tls: ssl.SSLContext
    io_timeout: float
    handshake_failures: int = 0
    requests_served: int = 0
    _count_lock = threading.Lock()

    def count_request(self) -> None:
        with self._count_lock:
            self.requests_served += 1

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.io_timeout)  # bound every read: a silent peer cannot hang us
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            # A client that refuses our evidence closes during or right after the handshake.
            self.handshake_failures += 1
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Peers that go away mid-request are routine here; do not print tracebacks."""


class AttestedHttpsServer:
    """A small HTTPS server presenting an attested certificate, on loopback by default.

    ``AttestedHttpsServer.in_guest(guest, ...)`` is the emulated workload: the TEE generates a
    key, obtains a report bound to it and serves with the resulting certificate. Use it as a
    context manager; ``url`` is ``https://127.0.0.1:<ephemeral port>``.
    """

    DEFAULT_ROUTES: ClassVar[Mapping[str, bytes]] = {
        "/": b"hello from an attested guest\n"}

    def __init__(self, certificate: x509.Certificate, key: PrivateKey, *,
                 host: str = "127.0.0.1", port: int = 0,
                 routes: Mapping[str, bytes] | None = None,
                 chain: Sequence[x509.Certificate] = (),
                 io_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.certificate = certificate
        self._httpd = _TLSHTTPServer((host, port), _Handler, bind_and_activate=True)
        self._httpd.tls = server_context(certificate, key, chain)
        self._httpd.routes = dict(routes if routes is not None else self.DEFAULT_ROUTES)
        self._httpd.io_timeout = io_timeout
        self._thread: threading.Thread | None = None

    @classmethod
    def in_guest(cls, guest: Attester | SnpAttester, *, now: datetime,
                 key_type: KeyType | str = KeyType.P256,
                 ca: CertificateAuthority | None = None, host: str = "127.0.0.1",
                 port: int = 0, routes: Mapping[str, bytes] | None = None,
                 io_timeout: float = DEFAULT_TIMEOUT) -> AttestedHttpsServer:
        """Inside ``guest`` (any :class:`~veritee.platform.base.Platform` whose scheme is
        registered, or an SEV-SNP guest): make a key, an attested certificate for it, and a
        server."""
        key = generate_private_key(key_type)
        ip_names = [host] if _is_ip(host) else []
        dns_names = [] if ip_names else [host]
        cert = issue_attested_certificate(guest, key, now=now, dns_names=dns_names,
                                          ip_addresses=ip_names, ca=ca)
        chain = [ca.certificate] if ca is not None else []
        return cls(cert, key, host=host, port=port, routes=routes, chain=chain,
                   io_timeout=io_timeout)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``https://host:port``."""
        host, port = self.address
        return f"https://{host}:{port}"

    @property
    def handshake_failures(self) -> int:
        """How many clients broke off during the TLS handshake (refusals show up here)."""
        return self._httpd.handshake_failures

    @property
    def requests_served(self) -> int:
        """How many HTTP requests reached a handler (a refused client sends none)."""
        return self._httpd.requests_served

    def start(self) -> AttestedHttpsServer:
        """Serve in a daemon thread."""
        if self._thread is not None:
            raise PlatformError("server already started")
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="veritee-attested-https", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop serving and close the socket (waits at most ``timeout`` for the thread)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> AttestedHttpsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
