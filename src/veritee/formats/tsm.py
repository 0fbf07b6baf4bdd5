"""Linux configfs-tsm reports as verifiers receive them: ``{outblob, auxblob, provider}``.

A guest writes REPORT_DATA to ``/sys/kernel/config/tsm/report/<entry>/inblob`` and reads the
hardware report from ``outblob`` and, for SEV-SNP, the host's certificate table from
``auxblob`` (Linux ``Documentation/ABI/testing/configfs-tsm``). Tools ship the three as a JSON
object (``outblob``/``auxblob`` base64url, as veraison's ``tsm-report`` does) or a CBOR map
(byte strings). Both decode here to :class:`TsmReport`; unknown keys are refused.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import cbor2

from veritee._decode import decode_base64, load_cbor, load_json
from veritee.errors import FormatError

__all__ = ["TsmReport"]

_NAME = "TSM_REPORT"
_KEYS = {"outblob", "auxblob", "provider"}
_MAX = 1 << 20  # a report plus certificates is a few KiB: anything larger is not one


@dataclass(frozen=True)
class TsmReport:
    """A configfs-tsm report: the provider (``sev_guest``, ``tdx_guest``), the hardware report
    (``outblob``) and the auxiliary blob (the SEV-SNP certificate table), if any."""

    provider: str
    outblob: bytes
    auxblob: bytes | None = None

    @staticmethod
    def looks_like(data: bytes) -> bool:
        """True when ``data`` starts like a JSON object or a CBOR map."""
        head = data.lstrip()[:1]
        return head == b"{" or (bool(data) and 0xA0 <= data[0] <= 0xBF)

    @classmethod
    def from_bytes(cls, data: bytes) -> TsmReport:
        """Decode the JSON or CBOR form."""
        if len(data) > _MAX:
            raise FormatError(_NAME, "<length>", got=len(data), want=f"<= {_MAX}")
        obj: Any
        # The bounded decoders: depth, size, integer and duplicate-key limits (veritee._decode).
        if data.lstrip()[:1] == b"{":
            obj = load_json(data, structure=_NAME, max_size=_MAX)
            encoding = "json"
        else:
            obj = load_cbor(data, structure=_NAME, max_size=_MAX)
            encoding = "cbor"
        if not isinstance(obj, dict):
            raise FormatError(_NAME, "<top>", got=type(obj).__name__, want="a map")
        if not all(isinstance(k, str) for k in obj):
            raise FormatError(_NAME, "<keys>", got=[type(k).__name__ for k in obj][:4],
                              want="text keys")
        unknown = set(obj) - _KEYS
        if unknown:
            raise FormatError(_NAME, "<keys>", got=sorted(unknown), want=sorted(_KEYS))
        provider = obj.get("provider")
        if isinstance(provider, str):
            provider = provider.strip()  # configfs attributes end with a newline
        if not isinstance(provider, str) or not provider:
            raise FormatError(_NAME, "provider", got=provider, want="a provider name")
        out = _blob(obj.get("outblob"), "outblob", encoding)
        if out is None:
            raise FormatError(_NAME, "outblob", got=None, want="the hardware report")
        return cls(provider=provider, outblob=out, auxblob=_blob(obj.get("auxblob"), "auxblob",
                                                                 encoding))

    def to_json(self) -> bytes:
        """The JSON form (base64url, no padding)."""
        obj: dict[str, str] = {"provider": self.provider, "outblob": _b64(self.outblob)}
        if self.auxblob is not None:
            obj["auxblob"] = _b64(self.auxblob)
        return json.dumps(obj).encode()

    def to_cbor(self) -> bytes:
        """The CBOR form."""
        obj: dict[str, object] = {"provider": self.provider, "outblob": self.outblob}
        if self.auxblob is not None:
            obj["auxblob"] = self.auxblob
        return bytes(cbor2.dumps(obj))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _blob(value: object, field: str, encoding: str) -> bytes | None:
    if value is None:
        return None
    if encoding == "cbor":
        if not isinstance(value, bytes):
            raise FormatError(_NAME, field, got=type(value).__name__, want="a byte string")
        return value
    if not isinstance(value, str):
        raise FormatError(_NAME, field, got=type(value).__name__, want="base64url text")
    # One alphabet: a mix of "+/" and "-_" is refused, as the HCL claims reader does.
    return decode_base64(value, structure=_NAME, field=field, alphabet="url")
