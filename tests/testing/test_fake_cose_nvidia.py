"""The Nitro, Arm and NVIDIA fakes sign for real and follow their vendor's profile, so the
production verifiers accept them unchanged (only the anchors differ)."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from veritee.formats.cca import CcaToken
from veritee.formats.nitro import NitroDocument
from veritee.formats.nvidia import GpuReport
from veritee.formats.psa import PsaToken
from veritee.testing.arm import FakeCca, FakePsa, instance_id
from veritee.testing.nitro import FakeNitro
from veritee.testing.nvidia import TCB_INFO_OID, FakeNvidia
from veritee.trust.cca import verify_cca_token
from veritee.trust.nitro import verify_document
from veritee.trust.nvidia import verify_gpu_report
from veritee.trust.psa import verify_psa_token

from _evidence import evidence_available
from _nvidia_support import GOOD


def test_fake_nitro_follows_the_nsm_profile() -> None:
    nitro = FakeNitro(intermediates=2)
    doc = NitroDocument.from_bytes(nitro.document(nonce=b"n" * 64, pcrs={0: b"\x07" * 48}))
    assert doc.payload.cabundle[0] == nitro.cabundle()[0]
    assert x509.load_der_x509_certificate(doc.payload.cabundle[0]).subject == nitro.root.subject
    assert nitro.root.subject.rfc4514_string() == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    assert nitro.leaf.not_valid_after_utc - nitro.leaf.not_valid_before_utc == timedelta(hours=3)
    v = verify_document(doc, now=nitro.now, trusted_roots=nitro.anchors())
    assert len(v.chain) == 4 and v.payload.nonce == b"n" * 64
    assert v.payload.pcrs[0] == b"\x07" * 48 and not v.payload.debug_mode
    assert NitroDocument.from_bytes(nitro.document(debug=True)).payload.debug_mode


def test_fake_arm_devices_follow_rfc9783_and_rmm() -> None:
    psa = FakePsa()
    token = PsaToken.from_bytes(psa.token(nonce=b"\x01" * 48))
    assert token.claims.instance_id == instance_id(psa.iak.public_key())
    assert token.claims.lifecycle_state == "secured" and token.claims.nonce == b"\x01" * 48
    verify_psa_token(token, iak_public_key=psa.iak.public_key())
    cca = FakeCca()
    for legacy in (False, True):
        ctoken = CcaToken.from_bytes(cca.token(challenge=b"\x02" * 64, legacy=legacy))
        assert ctoken.collection_tag == (907 if legacy else 399)
        assert ctoken.realm_claims.challenge == b"\x02" * 64
        assert ctoken.platform_claims.instance_id == cca.instance_id
        verify_cca_token(ctoken, cpak_public_key=cca.cpak.public_key())


def test_fake_nvidia_follows_the_device_profile() -> None:
    gpu = FakeNvidia(fwid=b"\x42" * 48)
    transcript = gpu.transcript(nonce=b"\x05" * 32, blocks={1: b"\x01" * 48, 3: b"\x03" * 48},
                                vbios_version="96.00.74.00.1a")
    assert GpuReport.from_bytes(transcript.to_bytes()) == transcript
    assert transcript.opaque.vbios_version == "96.00.74.00.1a"
    assert transcript.opaque.driver_version == "550.90.07"
    assert [b.index for b in transcript.response.blocks] == [1, 3]
    assert [c.subject.rfc4514_string() for c in gpu.chain][-1] == (
        "CN=NVIDIA Device Identity CA,O=NVIDIA")
    assert all(isinstance(c.signature_hash_algorithm, hashes.SHA384) for c in gpu.chain)
    v = verify_gpu_report(transcript, gpu.chain, now=gpu.now, nonce=b"\x05" * 32,
                          trusted_roots=gpu.anchors())
    assert {f.code: f.outcome.value for f in v.checks}["nvidia.fwid"] == "pass"


def test_fake_tcb_info_has_the_shape_of_a_real_hopper_leaf() -> None:
    ours = FakeNvidia().chain[0].extensions.get_extension_for_oid(TCB_INFO_OID).value
    assert isinstance(ours, x509.UnrecognizedExtension)
    fwid_head = bytes.fromhex("0609608648016503040202" "0430")  # sha384 OID, OCTET STRING(48)
    assert fwid_head in ours.value
    if evidence_available():  # the real leaf carries its FWID the same way
        real = x509.load_pem_x509_certificates((GOOD.dir / str(GOOD.chain)).read_bytes())[0]
        ext = real.extensions.get_extension_for_oid(TCB_INFO_OID).value
        assert isinstance(ext, x509.UnrecognizedExtension) and fwid_head in ext.value
