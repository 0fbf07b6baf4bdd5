"""The whole veritee exception tree.

::

    VeriteeError                      root: catch this to catch everything veritee raises
    ├── FormatError                   bad bytes: names structure, field, offset, got, want
    ├── VerificationError             signature / chain / revocation / binding failed
    │   └── PolicyRejected            verified, but the appraisal rejected it (carries it)
    ├── CollateralError               certificates / CRLs needed to verify are unavailable
    ├── ConfigError                   a policy or settings file is wrong
    ├── PlatformError                 the TEE (emulated or real) refused or is absent
    ├── SealingError                  one message for every unseal failure: no oracle
    └── KeyStoreError                 bad key handle, wrong usage, store of another workload

Each family maps to one CLI exit code (``veritee.cli.EXIT_CODES``). Callers act on the family;
the attributes give a human the detail.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up

if TYPE_CHECKING:  # pragma: no cover - typing only, avoids an import cycle
    from typing import Any

    from veritee.policy import Appraisal

__all__ = [
    "CollateralError",
    "ConfigError",
    "FormatError",
    "KeyStoreError",
    "PlatformError",
    "PolicyRejected",
    "SealingError",
    "VerificationError",
    "VeriteeError",
]


class VeriteeError(Exception):
    """Root of every exception veritee raises on purpose."""


class FormatError(VeriteeError, ValueError):
    """Bytes that do not parse as the structure they claim to be.

    ``structure`` is the structure being parsed, ``field`` the field at fault, ``offset`` its
    byte offset inside the structure (``None`` when it is about the whole buffer), and
    ``got``/``want`` what was found and what the specification requires.
    """

    def __init__(
        self,
        structure: str,
        field: str,
        *,
        offset: int | None = None,
        got: object = None,
        want: object = None,
        detail: str | None = None,
    ) -> None:
        self.structure = structure
        self.field = field
        self.offset = offset
        self.got = got
        self.want = want
        where = f"{structure}.{field}" + (f" at offset 0x{offset:x}" if offset is not None else "")
        # ``want`` is the specification's words (ours, bounded): never cut short.
        msg = f"{where}: got {_short(got)}, want {_short(want, limit=400)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class VerificationError(VeriteeError):
    """A cryptographic check failed: signature, certificate chain, revocation or binding.

    ``code`` is a stable machine-readable identifier such as ``sevsnp.report.signature``.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class PolicyRejected(VerificationError):  # noqa: N818 - the name callers know
    """The evidence verified, but the appraisal policy rejected it.

    ``appraisal`` holds every finding, not only the first.
    """

    def __init__(self, appraisal: Appraisal) -> None:
        self.appraisal = appraisal
        failed = [f.code for f in appraisal.failures]
        super().__init__("policy.rejected", f"{len(failed)} check(s) failed: {', '.join(failed)}")


class CollateralError(VeriteeError):
    """Collateral (certificates, CRLs) needed for verification could not be obtained."""


class ConfigError(VeriteeError, ValueError):
    """A policy, settings or collateral file is malformed (unknown key, wrong type, ...)."""


class PlatformError(VeriteeError):
    """The TEE platform cannot do what was asked (device absent, request refused)."""


class SealingError(VeriteeError):
    """Unsealing failed. Deliberately one message for every cause, so it is not an oracle."""

    MESSAGE = "sealed data cannot be opened by this workload on this platform"

    def __init__(self, *_args: Any) -> None:
        super().__init__(self.MESSAGE)


class KeyStoreError(VeriteeError):
    """A key-store request was refused. ``reason`` is stable: ``unknown-key``,
    ``wrong-usage``, ``not-exportable``, ``destroyed``, ``exists``, ``locked`` (the store was
    sealed by another workload or platform), ``bad-request``."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def _short(value: object, limit: int = 80) -> str:
    """Render a value for an error message: bytes as hex, long values cut.

    It must never raise itself (it runs while an error is being built): a huge ``int`` (whose
    ``repr`` hits the interpreter's digit limit), a ``str`` with lone surrogates or an object
    whose ``repr`` fails are all rendered as a short description instead.
    """
    try:
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value[: limit // 2 + 1])
            text = raw.hex()
            text = text if len(value) * 2 <= limit else text[:limit] + f"... ({len(value)} bytes)"
            return text or "<empty>"
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
            return f"<{value.bit_length()}-bit integer>"
        text = value[:limit + 1] if isinstance(value, str) else repr(value)
        # Lone surrogates cannot be encoded to the terminal: escape them here, once.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(text) <= limit:
            return text
        cut = text.rfind(" ", limit // 2, limit)  # at a word boundary: never mid-word
        return text[:cut if cut > 0 else limit] + "..."
    except Exception:  # an error message must not raise a second error
        return f"<unprintable {type(value).__name__}>"
