"""Byte-level readers and writers for fixed-layout little-endian structures.

``Reader`` reads fixed offsets from a buffer whose exact length was checked first, so no read
can run past the end; every failure is a :class:`~veritee.errors.FormatError` naming the
structure, the field and its offset. ``Writer`` is the inverse used by ``to_bytes``.
"""

from __future__ import annotations

from veritee.errors import FormatError


class Reader:
    """Reads little-endian fields at fixed offsets of ``data`` for structure ``name``."""

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: bytes, *, size: int | None = None) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FormatError(name, "<buffer>", got=type(data).__name__, want="bytes")
        self.name = name
        self.data = bytes(data)
        if size is not None and len(self.data) != size:
            raise FormatError(name, "<length>", got=len(self.data), want=size)

    def _span(self, field: str, offset: int, length: int) -> bytes:
        end = offset + length
        if offset < 0 or end > len(self.data):
            raise FormatError(
                self.name, field, offset=offset, got=f"{len(self.data)} bytes", want=f">= {end}"
            )
        return self.data[offset:end]

    def raw(self, field: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        return self._span(field, offset, length)

    def uint(self, field: str, offset: int, length: int) -> int:
        """Return the unsigned little-endian integer of ``length`` bytes at ``offset``."""
        return int.from_bytes(self._span(field, offset, length), "little")

    def u8(self, field: str, offset: int) -> int:
        """Return the byte at ``offset``."""
        return self.uint(field, offset, 1)

    def u16(self, field: str, offset: int) -> int:
        """Return the little-endian u16 at ``offset``."""
        return self.uint(field, offset, 2)

    def u32(self, field: str, offset: int) -> int:
        """Return the little-endian u32 at ``offset``."""
        return self.uint(field, offset, 4)

    def u64(self, field: str, offset: int) -> int:
        """Return the little-endian u64 at ``offset``."""
        return self.uint(field, offset, 8)

    def zero(self, field: str, offset: int, length: int) -> None:
        """Require ``length`` bytes at ``offset`` to be zero (a reserved range)."""
        span = self._span(field, offset, length)
        if any(span):
            first = next(i for i, b in enumerate(span) if b)
            raise FormatError(
                self.name,
                field,
                offset=offset + first,
                got=span,
                want="all zero (reserved)",
            )


class Writer:
    """Builds a fixed-size zero-filled buffer by writing fields at offsets."""

    __slots__ = ("buf", "name")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.buf = bytearray(size)

    def raw(self, field: str, offset: int, value: bytes, length: int | None = None) -> None:
        """Write ``value`` at ``offset``; its length must equal ``length`` when given."""
        if length is not None and len(value) != length:
            raise FormatError(self.name, field, offset=offset, got=f"{len(value)} bytes",
                              want=f"{length} bytes")
        if offset + len(value) > len(self.buf):
            raise FormatError(self.name, field, offset=offset, got=len(value),
                              want=f"<= {len(self.buf) - offset} bytes")
        self.buf[offset : offset + len(value)] = value

    def uint(self, field: str, offset: int, length: int, value: int) -> None:
        """Write ``value`` as an unsigned little-endian integer of ``length`` bytes."""
        if not 0 <= value < 1 << (8 * length):
            raise FormatError(self.name, field, offset=offset, got=value,
                              want=f"0 <= value < 2**{8 * length}")
        self.buf[offset : offset + length] = value.to_bytes(length, "little")

    def u8(self, field: str, offset: int, value: int) -> None:
        """Write a byte."""
        self.uint(field, offset, 1, value)

    def u32(self, field: str, offset: int, value: int) -> None:
        """Write a little-endian u32."""
        self.uint(field, offset, 4, value)

    def u64(self, field: str, offset: int, value: int) -> None:
        """Write a little-endian u64."""
        self.uint(field, offset, 8, value)

    def getvalue(self) -> bytes:
        """Return the built buffer."""
        return bytes(self.buf)
