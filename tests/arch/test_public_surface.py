"""The public surface is pinned: a change to it must be deliberate (edit this test)."""

from __future__ import annotations

import importlib

import pytest

import veritee

PINNED = {
    "veritee": ["VeriteeError", "__version__", "verify_evidence"],
    "veritee.errors": ["CollateralError", "ConfigError", "FormatError", "KeyStoreError",
                       "PlatformError",
                       "PolicyRejected", "SealingError", "VerificationError", "VeriteeError"],
    "veritee.attest": ["UNSAFE_DEFAULT_POLICIES", "Challenge", "CompositeAppraisal",
                       "Evidence", "EvidencePart", "Verifier", "bind_report_data",
                       "is_intel_quote", "parse_evidence", "verify", "verify_evidence",
                       "verify_intel_evidence", "verify_only"],
    # The one verifier contract (issue 11): the Protocol, its types and the registry.
    "veritee.schemes": ["COMMON_CLAIMS", "Anchors", "Collateral", "Context", "Scheme",
                        "Verified", "all_schemes", "expected_binding", "get", "names",
                        "recognise"],
    "veritee.policy": ["Appraisal", "Finding", "Outcome"],
    "veritee.cli": ["EXIT_CODES", "main"],
    # The Confidential Containers KBS protocol (issue 13).
    "veritee.client_coco": ["CocoKbsClient", "sgx_evidence", "snp_evidence", "tdx_evidence"],
    "veritee.crypto.kbs_jwe": ["ALG", "ENC", "RSA1_5", "RSA_ALGORITHMS", "RSA_OAEP",
                               "RSA_OAEP_256", "decrypt_response", "encrypt_compact_ecdh_es",
                               "encrypt_response", "protected_header_json", "rsa_public_key"],
    "veritee.formats.coco": ["HASH_ALGORITHMS", "KBS_PROTOCOL_VERSION", "KNOWN_TEES",
                             "PROTOCOL_VERSIONS", "TEE_SHAPES", "AttestationMessage",
                             "CocoEvidence", "ProtocolVersion", "TeeShape",
                             "additional_evidence", "canonical_json", "device_evidence",
                             "init_data_digest", "parse_attestation", "primary_evidence",
                             "regularize", "runtime_data", "runtime_data_digest",
                             "snp_report_from_object", "snp_report_to_object", "tee_pubkey",
                             "tee_shape"],
    "veritee.service.kbs_protocol": ["ERROR_TYPE_PREFIX", "SESSION_COOKIE", "KbsError",
                                     "router"],
    "veritee.platform.base": ["Evidence", "Platform"],
    "veritee.platform.adapters": ["SgxPlatform", "SnpPlatform", "TdxGuestPlatform",
                                  "TdxPlatform", "TpmAdapter"],
}


@pytest.mark.parametrize("module", sorted(PINNED))
def test_public_names_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PINNED[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_lazy_front_door() -> None:
    from veritee.attest import verify_evidence

    assert veritee.verify_evidence is verify_evidence
    with pytest.raises(AttributeError):
        veritee.no_such_thing  # noqa: B018
