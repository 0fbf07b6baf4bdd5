"""The CoCo KBS front (/kbs/v0) against veritee's own (/v1), one client, in-process service.

Run: ``python benchmarks/bench_kbs.py [--exchanges N]``

One service (SQLite file, loopback HTTP, emulated SEV-SNP vendor with RSA-2048 keys) and one
emulated guest. Timed, sequentially, N times each:

* ``v1``: challenge -> attest -> resource (JWS over JWE) -> decrypt, fresh nonce and key;
* ``kbs``: auth -> attest -> resource (flattened JWE) -> decrypt, fresh session and key;
* ``kbs reuse``: one attestation, then N resource requests with the session cookie;
* ``kbs rsa``: the kbs exchange with an RSA-OAEP-256 TEE key (the guest generates a 2048-bit
  key per exchange, as attestation-agent does).

Printed: exchanges/s for each, the ratio kbs/v1, and the sizes of an EAR and of the sealed
session cookie that carries it (it must stay under the 4 KiB cookie limit).
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.client import AttesterClient
from veritee.client_coco import CocoKbsClient
from veritee.formats.sevsnp import Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.service import MasterKey, Settings, create_app
from veritee.service.core import create_admin_token
from veritee.service.server import LoopbackServer
from veritee.service.storage import open_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exchanges", type=int, default=30)
    n = ap.parse_args().exchanges
    machine = InsecureEmulatedSnpMachine(EmulatedAmdVendor.generate(Product.MILAN,
                                                                    key_size=2048))
    guest = machine.launch(simple_guest_image(b"bench".ljust(4096, b"\0")))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp)}/bench.db"
        crl = Path(tmp) / "amd-crl"  # revocation is required: the emulated vendor's CRL
        crl.mkdir()
        (crl / "ark.crl").write_bytes(machine.vendor.crl(machine.now()).public_bytes(
            Encoding.PEM))
        settings = Settings(database_url=url, dev_mode=True, key_source="emulated",
                            emulated_machine_dir="/nonexistent", amd_crl_dir=str(crl))
        store = open_store(url)
        app = create_app(settings, master_key=MasterKey(b"\x11" * 32),
                         anchors=machine.anchors(), store=store)
        server = LoopbackServer(app).start()
        _, admin = create_admin_token(store, "bench", "admin")
        httpx.put(f"{server.url}/v1/admin/resources/default/bench/key",
                  headers={"Authorization": f"Bearer {admin}"},
                  json={"secret": base64.b64encode(b"k" * 32).decode(),
                        "policy": {"measurements": [guest.measurement.hex()]}}
                  ).raise_for_status()
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                with AttesterClient(server.url, guest, dev_mode=True) as v1:
                    assert v1.fetch("default/bench/key") == b"k" * 32
            v1_rate = n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(n):
                with CocoKbsClient(server.url, guest, dev_mode=True) as kbs:
                    assert kbs.get_resource("default/bench/key") == b"k" * 32
            kbs_rate = n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(n):
                with CocoKbsClient(server.url, guest, dev_mode=True,
                                   key_algorithm="RSA-OAEP-256") as kbs:
                    assert kbs.get_resource("default/bench/key") == b"k" * 32
                    rsa_cookie = kbs._http.cookies["kbs-session-id"]
            rsa_rate = n / (time.perf_counter() - t0)
            with CocoKbsClient(server.url, guest, dev_mode=True) as kbs:
                token = kbs.attest()
                cookie = kbs._http.cookies["kbs-session-id"]
                t0 = time.perf_counter()
                for _ in range(n):
                    assert kbs.resource("default/bench/key") == b"k" * 32
                reuse_rate = n / (time.perf_counter() - t0)
        finally:
            server.stop()
            store.close()
    print(f"v1 exchanges/s           {v1_rate:8.1f}")
    print(f"kbs exchanges/s          {kbs_rate:8.1f}   ratio kbs/v1 {kbs_rate / v1_rate:.2f}")
    print(f"kbs resources/s (reuse)  {reuse_rate:8.1f}   "
          f"ratio reuse/kbs {reuse_rate / kbs_rate:.2f}")
    print(f"kbs rsa exchanges/s      {rsa_rate:8.1f}   ratio rsa/ec {rsa_rate / kbs_rate:.2f}")
    print(f"EAR {len(token)} bytes, session cookie {len(cookie)} bytes, with an RSA key "
          f"{len(rsa_cookie)} bytes (limit 4096)")


if __name__ == "__main__":
    main()
