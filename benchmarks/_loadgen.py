"""Load generator for the service benchmarks: whole exchanges from separate client processes.

Used by ``bench_service.py`` and ``bench_replicas.py``. :func:`run_load` starts ``processes``
client processes (``python benchmarks/_loadgen.py``, never threads of the process that runs
the servers), each optionally pinned to ``cpus`` (``os.sched_setaffinity``), each running
``concurrency / processes`` concurrent exchanges on one asyncio loop, every exchange on its
own keep-alive HTTP/1.1 connection (as that many separate attesters would hold).

Each exchange does all an attester does, with the library's own functions: ``POST
/v1/challenge``; a fresh P-384 key; an emulated SEV-SNP report signed by the chip's VCEK over
SHA-512(nonce || SPKI) with its certificate table (:func:`veritee.client.evidence_for`);
``POST /v1/attest``; the EAR verified against the service's JWKS and checked bound to the key
(:func:`veritee.results.verify_ear`); ``GET /v1/resources/...``; the release's JWS verified and
its JWE decrypted (:func:`veritee.client.decrypt_release`); the secret compared. The HTTP layer
is a minimal keep-alive client on asyncio streams (a JSON body, ``Content-Length`` framing):
httpx costs the client more CPU per request than the rest of this loop, and the point is to
measure the server, so the client must stay cheap.

Protocol with a child: the spec as JSON in ``argv[1]``; the child loads the emulated machine,
launches the guest, runs one warm-up exchange per connection and prints ``ready``; it then
reads the load duration from stdin, runs, and prints one JSON line of results (latencies,
errors, its own CPU seconds over the load window).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from veritee.client import decrypt_release, evidence_for
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.results import EarKeys, verify_ear

__all__ = ["LoadResult", "percentile", "run_load"]


@dataclass
class LoadResult:
    """What the client processes measured over one load window."""

    exchanges: int
    errors: int
    elapsed: float  # from "go" until the last client process finished its last exchange
    latencies: list[float]
    client_cpu: float  # user + system seconds of all client processes over the window
    processes: int
    pinned: list[int] | None
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Completed exchanges per second."""
        return self.exchanges / self.elapsed if self.elapsed else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method; NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_load(url: str, machine_dir: Path, image_label: bytes, *, resource_path: str,
             secret: bytes, concurrency: int, processes: int, seconds: float,
             cpus: Sequence[int] | None = None,
             on_start: Callable[[], None] | None = None,
             on_stop: Callable[[], None] | None = None) -> LoadResult:
    """Run ``concurrency`` exchanges at a time for ``seconds`` from ``processes`` client
    processes against ``url``; ``on_start``/``on_stop`` run right before the load starts and
    right after the last exchange ends (the caller samples server CPU there)."""
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0)
              for i in range(processes)]
    children: list[subprocess.Popen[str]] = []
    try:
        for share in shares:
            spec = {"url": url, "machine_dir": str(machine_dir),
                    "image_label": base64.b64encode(image_label).decode(),
                    "resource": resource_path, "secret": base64.b64encode(secret).decode(),
                    "concurrency": share, "cpus": list(cpus) if cpus else None}
            children.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"client process did not start: {line[:500]!r}")
        if on_start is not None:
            on_start()
        t0 = time.monotonic()
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{seconds}\n")
            child.stdin.flush()
        results = []
        for child in children:
            assert child.stdout is not None
            results.append(json.loads(child.stdout.readline()))
        elapsed = time.monotonic() - t0
        if on_stop is not None:
            on_stop()
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
    latencies = [x for r in results for x in r["latencies"]]
    return LoadResult(exchanges=len(latencies), errors=sum(r["errors"] for r in results),
                      elapsed=elapsed, latencies=latencies,
                      client_cpu=sum(r["cpu"] for r in results), processes=len(children),
                      pinned=list(cpus) if cpus else None,
                      error_samples=[e for r in results for e in r["error_samples"]][:5])


# -- the client process ---------------------------------------------------------------------

class _RefusedError(Exception):
    pass


class _Connection:
    """One keep-alive HTTP/1.1 connection: JSON in, (status, JSON) out."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.hostport = f"{host}:{port}".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None,
                      bearer: str | None = None) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = [b"%s %s HTTP/1.1" % (method.encode(), path.encode()),
                b"Host: " + self.hostport, b"Content-Length: %d" % len(payload)]
        if body is not None:
            head.append(b"Content-Type: application/json")
        if bearer is not None:
            head.append(b"Authorization: Bearer " + bearer.encode())
        message = b"\r\n".join(head) + b"\r\n\r\n" + payload
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(message)
            try:
                status_line = await self.reader.readline()
            except ConnectionError:
                status_line = b""
            if not status_line:
                # The server closed an idle keep-alive connection before reading this
                # request: nothing was processed, so sending it again on a new one is safe.
                self.close()
                if attempt == 0:
                    continue
                raise ConnectionError("the server closed the connection")
            break
        raw_headers = await self.reader.readuntil(b"\r\n\r\n")
        length, close = 0, False
        for line in raw_headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise ConnectionError("chunked responses are not expected here")
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        status = int(status_line.split(b" ", 2)[1])
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _Attester:
    """Whole exchanges for one emulated guest, as :class:`veritee.client.AttesterClient`
    does them (the same library functions), over :class:`_Connection`."""

    def __init__(self, spec: dict[str, Any]) -> None:
        machine = InsecureEmulatedSnpMachine.load(Path(spec["machine_dir"]))
        label = base64.b64decode(spec["image_label"])
        self.guest = machine.launch(simple_guest_image(label.ljust(4096, b"\0")))
        parts = urlsplit(spec["url"])
        assert parts.hostname is not None and parts.port is not None
        self.host, self.port = parts.hostname, parts.port
        self.path = spec["resource"]
        self.secret = base64.b64decode(spec["secret"])
        self.jwks: dict[str, Any] = {}
        self.keys: EarKeys | None = None

    async def fetch_jwks(self, conn: _Connection) -> None:
        status, self.jwks = await conn.request("GET", "/v1/jwks")
        if status != 200:
            raise _RefusedError(f"jwks: HTTP {status}")
        self.keys = EarKeys.from_jwks(self.jwks)  # imported once, as a long-lived client would

    async def exchange(self, conn: _Connection) -> None:
        status, body = await conn.request("POST", "/v1/challenge")
        if status != 200:
            raise _RefusedError(f"challenge: HTTP {status} {body}")
        nonce = base64.urlsafe_b64decode(body["nonce"] + "=" * (-len(body["nonce"]) % 4))
        key = ec.generate_private_key(ec.SECP384R1())
        status, body = await conn.request("POST", "/v1/attest",
                                          evidence_for(self.guest, nonce, key))
        if status != 200:
            raise _RefusedError(f"attest: HTTP {status} {body}")
        token = str(body["token"])
        assert self.keys is not None
        result = verify_ear(token, self.keys, issuer="veritee",
                            accept=("affirming", "warning"))
        cnf = result.cnf_jwk
        if cnf is None or ECKey.import_key(cnf).thumbprint() != \
                ECKey.import_key(key.public_key()).thumbprint():
            raise _RefusedError("the EAR is not bound to this attester's key")
        status, body = await conn.request("GET", f"/v1/resources/{quote(self.path)}",
                                          bearer=token)
        if status != 200:
            raise _RefusedError(f"resource: HTTP {status} {body}")
        got = decrypt_release(str(body["release"]), key, jwks=self.jwks, path=self.path,
                              jti=str(result.claims["jti"]))
        if got != self.secret:
            raise _RefusedError("the released secret differs")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _child(spec: dict[str, Any]) -> None:
    attester = _Attester(spec)
    conns = [_Connection(attester.host, attester.port) for _ in range(spec["concurrency"])]
    await attester.fetch_jwks(conns[0])
    # Warm up: open every connection, and every server process's caches.
    await asyncio.gather(*(attester.exchange(c) for c in conns))
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    seconds = float(await loop.run_in_executor(None, sys.stdin.readline))
    latencies: list[float] = []
    errors: list[str] = []
    c0 = _cpu()
    stop_at = time.monotonic() + seconds

    async def worker(conn: _Connection) -> None:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                await attester.exchange(conn)
            except Exception as exc:  # counted and sampled, the load goes on
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                conn.close()
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(c) for c in conns))
    cpu = _cpu() - c0
    for c in conns:
        c.close()
    print(json.dumps({"latencies": latencies, "errors": len(errors),
                      "error_samples": errors[:5], "cpu": cpu}), flush=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])
    try:
        asyncio.run(_child(spec))
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
