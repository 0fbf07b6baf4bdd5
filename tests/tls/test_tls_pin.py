"""Issue 16, finding 5: attested TLS needs a workload pin, and old certificates are refused."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from veritee.crypto.certs import KeyType, generate_private_key
from veritee.errors import ConfigError, VerificationError
from veritee.formats.sevsnp import Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)
from veritee.policy.sevsnp import SevSnpPolicy
from veritee.ratls import issue_attested_certificate, verify_attested_certificate
from veritee.tls import AttestedHttpsServer, attested_httpx_client, connect_attested
from veritee.trust.sevsnp import AmdCertificates

TIMEOUT = 5.0
ATTACKER_IMAGE = b"\xee" * 4096 * 4


@pytest.fixture(scope="module")
def machine() -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(EmulatedAmdVendor.generate(Product.MILAN, key_size=2048))


@pytest.fixture(scope="module")
def attacker(machine: InsecureEmulatedSnpMachine) -> EmulatedSnpGuest:
    """A genuine SEV-SNP VM running whatever its owner likes (the attacker's own cloud VM)."""
    return machine.launch(simple_guest_image(ATTACKER_IMAGE))


@pytest.fixture
def attacker_server(attacker: EmulatedSnpGuest) -> Iterator[AttestedHttpsServer]:
    with AttestedHttpsServer.in_guest(attacker, now=datetime.now(UTC),
                                      io_timeout=TIMEOUT) as srv:
        yield srv


@pytest.mark.parametrize("policy", [None, SevSnpPolicy(policy_id="defaults only")])
def test_attested_tls_requires_a_workload_pin(attacker_server: AttestedHttpsServer,
                                              machine: InsecureEmulatedSnpMachine,
                                              policy: SevSnpPolicy | None) -> None:
    host, port = attacker_server.address
    with pytest.raises(ConfigError, match="pin"):
        connect_attested(host, port, policy=policy, anchors=machine.anchors(),
                         timeout=TIMEOUT).close()
    with pytest.raises(ConfigError, match="pin"):
        attested_httpx_client(attacker_server.url, policy=policy, anchors=machine.anchors(),
                              timeout=TIMEOUT)
    assert attacker_server.requests_served == 0


@pytest.mark.parametrize("pin", ["host_data", "id_key_digests", "author_key_digests"])
def test_any_workload_pin_kind_is_enough(attacker_server: AttestedHttpsServer,
                                         machine: InsecureEmulatedSnpMachine,
                                         attacker: EmulatedSnpGuest, pin: str) -> None:
    value: object = (attacker.host_data if pin == "host_data"
                     else frozenset({b"\x01" * 48}))  # refused on the value, not the pin
    policy = SevSnpPolicy(policy_id="pinned", **{pin: value})  # type: ignore[arg-type]
    host, port = attacker_server.address
    # Refused on the pinned value is fine; a ConfigError (no pin) is not.
    with contextlib.suppress(VerificationError):
        connect_attested(host, port, policy=policy, anchors=machine.anchors(),
                         timeout=TIMEOUT).close()


def test_stale_attested_certificate_refused(machine: InsecureEmulatedSnpMachine,
                                            attacker: EmulatedSnpGuest) -> None:
    issued = datetime.now(UTC)
    cert = issue_attested_certificate(attacker, generate_private_key(KeyType.P256), now=issued,
                                      valid_for=timedelta(days=3650))
    policy = SevSnpPolicy(policy_id="w", measurements=frozenset({attacker.measurement}))
    crl = AmdCertificates(crl=machine.vendor.crl(issued))  # issue 18: revocation is checked
    verify_attested_certificate(cert, policy=policy, anchors=machine.anchors(), now=issued,
                                collateral=crl)
    with pytest.raises(VerificationError) as exc:  # a 10-year certificate, 5 years later
        verify_attested_certificate(cert, policy=policy, anchors=machine.anchors(),
                                    now=issued + timedelta(days=5 * 365))
    assert exc.value.code == "ratls.certificate.too_old"


def test_workload_pin_rule_for_every_scheme_policy() -> None:
    """Each scheme's launch-identity fields pin; host-chosen or empty ones do not."""
    from veritee.errors import ConfigError
    from veritee.formats.tpm import HashAlg
    from veritee.policy.intel import SgxPolicy, TdxPolicy
    from veritee.policy.tpm import TpmPolicy
    from veritee.tls import require_workload_pin

    pinned = [TdxPolicy(mrtd=frozenset({bytes(48)})), TdxPolicy(rtmr1=frozenset({bytes(48)})),
              SgxPolicy(mrenclave=frozenset({bytes(32)})),
              SgxPolicy(mrsigner=frozenset({bytes(32)})),
              TpmPolicy(pcrs={HashAlg.SHA256: {0: bytes(32)}})]
    for policy in pinned:
        assert require_workload_pin(policy) is policy
    assert require_workload_pin({"tdx": pinned[0], "sgx": pinned[2]})
    unpinned = [TdxPolicy(), TdxPolicy(mrowner=frozenset({bytes(48)}),
                                       mrconfigid=frozenset({bytes(48)})),
                SgxPolicy(), TpmPolicy(), {"tdx": pinned[0], "sgx": SgxPolicy()}, {}]
    for bad in unpinned:
        with pytest.raises(ConfigError):
            require_workload_pin(bad)
