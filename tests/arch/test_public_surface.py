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
    "veritee.client_coco": ["CocoKbsClient", "snp_evidence", "tdx_evidence"],
    "veritee.crypto.kbs_jwe": ["ALG", "ENC", "decrypt_response", "encrypt_response",
                               "protected_header_json"],
    "veritee.formats.coco": ["ADDITIONAL_TEES", "HASH_ALGORITHMS", "KBS_PROTOCOL_VERSION",
                             "KNOWN_TEES", "SUPPORTED_TEES", "canonical_json",
                             "init_data_digest", "regularize", "runtime_data_digest",
                             "snp_report_from_object", "snp_report_to_object", "tee_pubkey"],
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
