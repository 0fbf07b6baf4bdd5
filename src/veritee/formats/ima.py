"""Linux IMA measurement logs (``binary_runtime_measurements`` and ``ascii_runtime_measurements``).

Sources (cited below by these short names):

* **TEMPLATES** - Linux ``Documentation/security/IMA-templates.rst`` ("IMA Template Management
  Mechanism"): the template fields ``d`` / ``n`` (the fixed ``ima`` template), ``d-ng``
  ("the hash of the event, with the algorithm name as prefix"), ``n-ng`` ("the name of the
  event, without size limitations"), ``sig`` (the file signature) and ``buf`` (the buffer
  data used to generate the hash), and the templates ``ima`` (``d|n``), ``ima-ng``
  (``d-ng|n-ng``), ``ima-sig`` (``d-ng|n-ng|sig``) and ``ima-buf`` (``d-ng|n-ng|buf``).
* **KERNEL** - ``security/integrity/ima/ima_fs.c`` (``ima_measurements_show``: the binary
  record is pcr, template digest, template name length, name, and - for every template but
  ``ima`` - the template data length, then each field as a u32 length and its data;
  ``ima_ascii_measurements_show``: one line per entry, every field preceded by one space),
  ``ima_template_lib.c`` (``d-ng`` is ``"<alg>:\\0" || digest``; ``n-ng`` is the NUL-terminated
  name) and ``ima_api.c`` (the ``ima`` template's digest is computed over the 20-byte digest and
  the name NUL-padded to ``IMA_EVENT_NAME_LEN_MAX + 1`` = 256 bytes).
* **SIGV2** - ``security/integrity/integrity.h`` ``struct signature_v2_hdr`` (type
  ``EVM_IMA_XATTR_DIGSIG`` = 3, version 2, ``hash_algo`` from ``include/uapi/linux/hash_info.h``,
  4-byte key id, big-endian u16 signature size, signature).
* Read for behaviour, nothing copied: tpm2-tss ``src/tss2-fapi/ifapi_ima_eventlog.c`` (binary
  parser and replay), keylime ``keylime/ima/ast.py`` and ``keylime/ima/ima.py`` (ascii parser,
  template hash recomputation, signature key ids).

Layout of one binary record (little-endian, native to the kernel that wrote it; veritee reads
little-endian logs, which every tested source uses)::

    u32 pcr | u8[20] template_hash | u32 name_len | char name[name_len]
    ima:      u8[20] digest | u32 len | char filename[len]              (no data length)
    other:    u32 data_len | data[data_len] = (u32 field_len | field)*

The template hash is SHA-1 over the template data (for ``ima``: digest || name padded to 256
bytes). A *violation* (a file measured while open for write, or vice versa) is logged with an
all-zero template hash and extends PCR 10 with all-0xff instead (KERNEL ``ima_add_violation``).
Parsing is bounded: every length is checked against the bytes left and :data:`MAX_ENTRIES`
caps the number of records, so hostile input raises :class:`~veritee.errors.FormatError` only.
Not handled: big-endian logs from big-endian kernels (``ima_canonical_fmt`` off), and the fields
of custom templates (their data is kept raw and still hashed; see :attr:`ImaEntry.fields`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from veritee.errors import FormatError

__all__ = [
    "IMA_PCR",
    "MAX_ENTRIES",
    "ImaEntry",
    "ImaLog",
    "ImaSignature",
    "KernelHashAlgo",
]

IMA_PCR = 10
"""The PCR IMA extends by default (``CONFIG_IMA_MEASURE_PCR_IDX``)."""
MAX_ENTRIES = 1 << 20
"""Upper bound on the records of one log (real logs hold thousands to a few hundred thousand)."""
MAX_PCR_INDEX = 23
TEMPLATE_HASH_SIZE = 20
_NAME_MAX = 255  # TCG_EVENT_NAME_LEN_MAX (ima.h): the template-name limit
_IMA_NAME_PAD = 256  # IMA_EVENT_NAME_LEN_MAX + 1 (ima.h)
_ZERO = bytes(TEMPLATE_HASH_SIZE)
_BIN = "IMA_MEASUREMENT"
_ASCII = "IMA_ASCII_MEASUREMENT"
_SIG = "IMA_SIGNATURE_V2"

# d-ng algorithm names and their digest sizes (crypto/hash_info.c hash_algo_name / digest_size).
DIGEST_SIZES: dict[str, int] = {
    "md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64,
    "sm3": 32, "sm3-256": 32, "streebog256": 32, "streebog512": 64,
    "sha3-256": 32, "sha3-384": 48, "sha3-512": 64,
}
_TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "ima-ng": ("d-ng", "n-ng"),
    "ima-sig": ("d-ng", "n-ng", "sig"),
    "ima-buf": ("d-ng", "n-ng", "buf"),
}
_HEX = re.compile(rb"[0-9a-fA-F]*")


class KernelHashAlgo(enum.IntEnum):
    """``enum hash_algo`` (``include/uapi/linux/hash_info.h``) values veritee can verify."""

    MD5 = 1
    SHA1 = 2
    SHA256 = 4
    SHA384 = 5
    SHA512 = 6
    SHA224 = 7

    @property
    def hashlib_name(self) -> str:
        """The name ``hashlib``/d-ng use (``sha256``)."""
        return self.name.lower()


@dataclass(frozen=True)
class ImaSignature:
    """An IMA digital signature, version 2 (SIGV2 ``struct signature_v2_hdr`` + signature).

    ``hash_algo`` is the kernel ``enum hash_algo`` value (``KernelHashAlgo`` when known);
    ``key_id`` the last four bytes of SHA-1 over the signer's public key.
    """

    type: int
    version: int
    hash_algo: int
    key_id: bytes
    signature: bytes

    HEADER_SIZE = 9
    TYPE_DIGSIG = 3  # EVM_IMA_XATTR_DIGSIG
    VERSION = 2

    @classmethod
    def from_bytes(cls, data: bytes) -> ImaSignature:
        """Parse a ``sig`` field; the header's size must equal the bytes that follow it."""
        data = bytes(data)
        if len(data) < cls.HEADER_SIZE:
            raise FormatError(_SIG, "<length>", got=len(data), want=f">= {cls.HEADER_SIZE}")
        if data[0] != cls.TYPE_DIGSIG:
            raise FormatError(_SIG, "type", offset=0, got=data[0], want=cls.TYPE_DIGSIG)
        if data[1] != cls.VERSION:
            raise FormatError(_SIG, "version", offset=1, got=data[1], want=cls.VERSION)
        size = int.from_bytes(data[7:9], "big")
        if size != len(data) - cls.HEADER_SIZE:
            raise FormatError(_SIG, "sig_size", offset=7, got=size,
                              want=len(data) - cls.HEADER_SIZE,
                              detail="must equal the signature bytes that follow the header")
        if size == 0:
            raise FormatError(_SIG, "sig_size", offset=7, got=0, want="> 0")
        return cls(data[0], data[1], data[2], data[3:7], data[9:])

    def to_bytes(self) -> bytes:
        """Serialize (inverse of :meth:`from_bytes`)."""
        return (bytes((self.type, self.version, self.hash_algo)) + self.key_id
                + len(self.signature).to_bytes(2, "big") + self.signature)

    @property
    def hash_name(self) -> str | None:
        """The hash algorithm name (``sha256``), or ``None`` when veritee does not know it."""
        try:
            return KernelHashAlgo(self.hash_algo).hashlib_name
        except ValueError:
            return None


@dataclass(frozen=True)
class ImaEntry:
    """One IMA measurement record.

    ``template_data`` is exactly what the template hash covers (for ``ima`` the 20-byte digest
    and the name NUL-padded to 256 bytes). ``digest_alg``/``digest``/``name`` come from the
    ``d``/``d-ng`` and ``n``/``n-ng`` fields; they are ``None`` for a custom template whose
    fields veritee does not parse. ``sig`` (``ima-sig``) and ``buf`` (``ima-buf``) are raw.
    """

    pcr: int
    template_hash: bytes
    template_name: str
    template_data: bytes
    digest_alg: str | None
    digest: bytes | None
    name: str | None
    sig: bytes = b""
    buf: bytes = b""

    @property
    def violation(self) -> bool:
        """True for a violation record (all-zero template hash; extends as all-0xff)."""
        return self.template_hash == _ZERO

    @property
    def file_digest(self) -> str | None:
        """``alg:hex`` as the ascii log prints it (``None`` for an unparsed template)."""
        if self.digest is None:
            return None
        return f"{self.digest_alg}:{self.digest.hex()}"

    @property
    def fields(self) -> tuple[str, ...] | None:
        """Template field names, or ``None`` for a template veritee does not parse."""
        if self.template_name == "ima":
            return ("d", "n")
        return _TEMPLATE_FIELDS.get(self.template_name)

    def to_binary(self) -> bytes:
        """The binary record (inverse of :meth:`ImaLog.from_binary` for this entry)."""
        name = self.template_name.encode()
        head = (self.pcr.to_bytes(4, "little") + self.template_hash
                + len(name).to_bytes(4, "little") + name)
        if self.template_name == "ima":
            assert self.name is not None and self.digest is not None
            filename = _encode_name(self.name)
            return head + self.digest + len(filename).to_bytes(4, "little") + filename
        return head + len(self.template_data).to_bytes(4, "little") + self.template_data

    def to_ascii(self) -> str:
        """The ascii line (without newline), as ``ascii_runtime_measurements`` prints it."""
        head = f"{self.pcr} {self.template_hash.hex()} {self.template_name}"
        if self.template_name == "ima":
            assert self.digest is not None
            return f"{head} {self.digest.hex()} {self.name}"
        if self.fields is None:
            raise FormatError(_ASCII, "template", got=self.template_name,
                              want="ima, ima-ng, ima-sig or ima-buf")
        line = f"{head} {self.file_digest} {self.name}"
        if self.template_name == "ima-sig":
            line += " " + self.sig.hex()
        elif self.template_name == "ima-buf":
            line += " " + self.buf.hex()
        return line


@dataclass(frozen=True)
class ImaLog:
    """A parsed IMA measurement list.

    ``trailing`` holds bytes after the last complete record that do not form a record; it is
    only non-empty when the log was parsed with ``strict=False`` (some test logs carry a stray
    newline or a truncated header there).
    """

    entries: tuple[ImaEntry, ...]
    trailing: bytes = b""

    @classmethod
    def from_binary(cls, data: bytes, *, strict: bool = True) -> ImaLog:
        """Parse ``binary_runtime_measurements``.

        With ``strict`` (the default) every byte must belong to a complete record. With
        ``strict=False`` a tail too short to be a record header - or a record whose lengths run
        past the end - is kept in :attr:`trailing` instead of raising; every complete record is
        still parsed strictly.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FormatError(_BIN, "<buffer>", got=type(data).__name__, want="bytes")
        buf = bytes(data)
        entries: list[ImaEntry] = []
        pos = 0
        while pos < len(buf):
            if len(entries) >= MAX_ENTRIES:
                raise FormatError(_BIN, "<count>", offset=pos, got=f"> {MAX_ENTRIES}",
                                  want=f"<= {MAX_ENTRIES} entries")
            try:
                entry, pos = _parse_record(buf, pos)
            except _Truncated as exc:
                if strict:
                    raise FormatError(_BIN, exc.field, offset=exc.offset,
                                      got=f"{len(buf) - exc.offset} bytes left",
                                      want=f">= {exc.need}", detail="truncated record") from None
                return cls(tuple(entries), buf[pos:])
            entries.append(entry)
        return cls(tuple(entries))

    @classmethod
    def from_ascii(cls, text: str | bytes) -> ImaLog:
        """Parse ``ascii_runtime_measurements`` (one entry per line; a final newline optional).

        The template data is rebuilt from the printed fields, so template hashes can be
        recomputed. Names are printed raw by the kernel: a name containing a space is ambiguous
        in this form (the binary form is authoritative); for ``ima-sig``/``ima-buf`` the last
        space-separated token is the hex signature/buffer (KERNEL prints a space before it even
        when it is empty).
        """
        if isinstance(text, str):
            try:
                raw = text.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as exc:  # a lone surrogate outside U+DC80..U+DCFF
                raise FormatError(_ASCII, "<text>", offset=exc.start, got=repr(text[exc.start]),
                                  want="text that encodes to bytes (no lone surrogates)"
                                  ) from None
        elif isinstance(text, bytes | bytearray | memoryview):
            raw = bytes(text)
        else:
            raise FormatError(_ASCII, "<buffer>", got=type(text).__name__, want="str or bytes")
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if len(lines) > MAX_ENTRIES:
            raise FormatError(_ASCII, "<count>", got=len(lines), want=f"<= {MAX_ENTRIES}")
        return cls(tuple(_parse_line(line, number) for number, line in enumerate(lines, 1)))

    def to_binary(self) -> bytes:
        """Serialize every entry (``trailing`` is not written)."""
        return b"".join(e.to_binary() for e in self.entries)

    def to_ascii(self) -> str:
        """Serialize as ``ascii_runtime_measurements`` text."""
        return "".join(e.to_ascii() + "\n" for e in self.entries)

    @property
    def violations(self) -> tuple[int, ...]:
        """Indices of violation records."""
        return tuple(i for i, e in enumerate(self.entries) if e.violation)


# -- binary --------------------------------------------------------------------------------
class _Truncated(Exception):  # noqa: N818 - internal signal, never escapes
    def __init__(self, field: str, offset: int, need: int) -> None:
        super().__init__(field)
        self.field = field
        self.offset = offset
        self.need = need


def _take(buf: bytes, pos: int, n: int, fld: str) -> tuple[bytes, int]:
    if pos + n > len(buf):
        raise _Truncated(fld, pos, n)
    return buf[pos:pos + n], pos + n


def _u32(buf: bytes, pos: int, fld: str) -> tuple[int, int]:
    raw, pos = _take(buf, pos, 4, fld)
    return int.from_bytes(raw, "little"), pos


def _parse_record(buf: bytes, start: int) -> tuple[ImaEntry, int]:
    pcr, pos = _u32(buf, start, "pcr")
    if pcr > MAX_PCR_INDEX:
        raise FormatError(_BIN, "pcr", offset=start, got=pcr, want=f"<= {MAX_PCR_INDEX}")
    template_hash, pos = _take(buf, pos, TEMPLATE_HASH_SIZE, "template_hash")
    name_len, pos = _u32(buf, pos, "template_name_len")
    if not 0 < name_len <= _NAME_MAX:
        raise FormatError(_BIN, "template_name_len", offset=pos - 4, got=name_len,
                          want=f"1..{_NAME_MAX}")
    raw_name, pos = _take(buf, pos, name_len, "template_name")
    tname = _ascii_name(raw_name, pos - name_len)
    if tname == "ima":
        digest, pos = _take(buf, pos, TEMPLATE_HASH_SIZE, "d")
        flen, pos = _u32(buf, pos, "n.len")
        if flen > _NAME_MAX:
            raise FormatError(_BIN, "n.len", offset=pos - 4, got=flen, want=f"<= {_NAME_MAX}")
        filename, pos = _take(buf, pos, flen, "n")
        path = _decode_name(filename, pos - flen, _BIN, "n")
        entry = ImaEntry(pcr, template_hash, tname, _ima_template_data(digest, filename),
                         "sha1", digest, path)
        return entry, pos
    data_len, pos = _u32(buf, pos, "template_data_len")
    data, pos = _take(buf, pos, data_len, "template_data")
    return _entry_from_data(pcr, template_hash, tname, data, pos - data_len), pos


def _ascii_name(raw: bytes, offset: int) -> str:
    if not all(0x21 <= b < 0x7F for b in raw):
        raise FormatError(_BIN, "template_name", offset=offset, got=raw,
                          want="printable ASCII without spaces")
    return raw.decode("ascii")


def _ima_template_data(digest: bytes, filename: bytes) -> bytes:
    """KERNEL ima_api.c: the ``ima`` template hash covers digest || name padded to 256."""
    return digest + filename + bytes(_IMA_NAME_PAD - len(filename))


def _split_fields(data: bytes, base: int, tname: str) -> list[bytes]:
    fields: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise FormatError(_BIN, f"{tname}.field_len", offset=base + pos,
                              got=f"{len(data) - pos} bytes", want=">= 4")
        n = int.from_bytes(data[pos:pos + 4], "little")
        if pos + 4 + n > len(data):
            raise FormatError(_BIN, f"{tname}.field", offset=base + pos, got=n,
                              want=f"<= {len(data) - pos - 4}", detail="field runs past data")
        fields.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return fields


def _entry_from_data(pcr: int, template_hash: bytes, tname: str, data: bytes,
                     base: int) -> ImaEntry:
    wanted = _TEMPLATE_FIELDS.get(tname)
    if wanted is None:  # a custom template: keep its data, hash it, parse nothing
        return ImaEntry(pcr, template_hash, tname, data, None, None, None)
    fields = _split_fields(data, base, tname)
    if len(fields) != len(wanted):
        raise FormatError(_BIN, f"{tname}.fields", offset=base, got=len(fields),
                          want=len(wanted), detail="|".join(wanted))
    alg, digest = _parse_dng(fields[0], base, _BIN)
    path = _parse_nng(fields[1], base, _BIN)
    extra = fields[2] if len(fields) > 2 else b""
    return ImaEntry(pcr, template_hash, tname, data, alg, digest, path,
                    sig=extra if tname == "ima-sig" else b"",
                    buf=extra if tname == "ima-buf" else b"")


def _parse_dng(field: bytes, base: int, structure: str) -> tuple[str, bytes]:
    """TEMPLATES ``d-ng``: ``<alg>:\\0`` then the digest."""
    sep = field.find(b":\0")
    if sep <= 0:
        raise FormatError(structure, "d-ng", offset=base, got=field[:16],
                          want="'<alg>:\\0' prefix")
    alg = field[:sep]
    if not all(0x21 <= b < 0x7F for b in alg):
        raise FormatError(structure, "d-ng.alg", offset=base, got=alg, want="an algorithm name")
    name = alg.decode("ascii")
    digest = field[sep + 2:]
    want = DIGEST_SIZES.get(name)
    if want is not None and len(digest) != want:
        raise FormatError(structure, "d-ng.digest", offset=base, got=len(digest), want=want,
                          detail=f"{name} digest size")
    if not digest:
        raise FormatError(structure, "d-ng.digest", offset=base, got=0, want="> 0 bytes")
    return name, digest


def _parse_nng(field: bytes, base: int, structure: str) -> str:
    """TEMPLATES ``n-ng``: the name, NUL-terminated (KERNEL writes the terminator)."""
    if not field or field[-1] != 0:
        raise FormatError(structure, "n-ng", offset=base, got=field[-16:],
                          want="a NUL-terminated name")
    return _decode_name(field[:-1], base, structure, "n-ng")


def _decode_name(raw: bytes, offset: int, structure: str, fld: str) -> str:
    if b"\0" in raw or b"\n" in raw:
        raise FormatError(structure, fld, offset=offset, got=raw[:32],
                          want="a name without NUL or newline")
    return raw.decode("utf-8", "surrogateescape")


def _encode_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


# -- ascii ---------------------------------------------------------------------------------
def _hex(token: bytes, line: int, fld: str, size: int | None = None) -> bytes:
    if not _HEX.fullmatch(token) or len(token) % 2:
        raise FormatError(_ASCII, fld, offset=line, got=token[:40], want="hex",
                          detail="offset is the line number")
    value = bytes.fromhex(token.decode("ascii"))
    if size is not None and len(value) != size:
        raise FormatError(_ASCII, fld, offset=line, got=len(value), want=size)
    return value


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "little") + data


def _parse_line(line: bytes, number: int) -> ImaEntry:
    parts = line.split(b" ", 4)
    if len(parts) < 5:
        raise FormatError(_ASCII, "line", offset=number, got=line[:60],
                          want="'<pcr> <template-hash> <template> <digest> <name>'")
    spcr, shash, stname, sdigest, rest = parts
    if not spcr.isdigit() or len(spcr) > 2 or int(spcr) > MAX_PCR_INDEX:
        raise FormatError(_ASCII, "pcr", offset=number, got=spcr[:8],
                          want=f"0..{MAX_PCR_INDEX}")
    template_hash = _hex(shash, number, "template_hash", TEMPLATE_HASH_SIZE)
    if not 0 < len(stname) <= _NAME_MAX or not all(0x21 <= b < 0x7F for b in stname):
        raise FormatError(_ASCII, "template", offset=number, got=stname[:40],
                          want="a template name")
    tname = stname.decode("ascii")
    if tname == "ima":
        digest = _hex(sdigest, number, "d", TEMPLATE_HASH_SIZE)
        filename = _encode_name(_decode_name(rest, number, _ASCII, "n"))
        if len(filename) > _NAME_MAX:
            raise FormatError(_ASCII, "n", offset=number, got=len(filename),
                              want=f"<= {_NAME_MAX} bytes")
        return ImaEntry(int(spcr), template_hash, tname, _ima_template_data(digest, filename),
                        "sha1", digest, filename.decode("utf-8", "surrogateescape"))
    if tname not in _TEMPLATE_FIELDS:
        raise FormatError(_ASCII, "template", offset=number, got=tname,
                          want="ima, ima-ng, ima-sig or ima-buf")
    alg, sep, shex = sdigest.partition(b":")
    if not sep:
        raise FormatError(_ASCII, "d-ng", offset=number, got=sdigest[:40], want="<alg>:<hex>")
    dng = alg + b":\0" + _hex(shex, number, "d-ng.digest")
    alg_name, digest = _parse_dng(dng, number, _ASCII)
    extra = b""
    if tname in ("ima-sig", "ima-buf"):
        if b" " not in rest:
            raise FormatError(_ASCII, tname, offset=number, got=rest[-40:],
                              want="'<name> <hex>' (the hex may be empty)")
        rest, tail = rest.rsplit(b" ", 1)
        extra = _hex(tail, number, "sig" if tname == "ima-sig" else "buf")
    path = _decode_name(rest, number, _ASCII, "n-ng")
    data = _field(dng) + _field(rest + b"\0") + (_field(extra) if tname != "ima-ng" else b"")
    return ImaEntry(int(spcr), template_hash, tname, data, alg_name, digest, path,
                    sig=extra if tname == "ima-sig" else b"",
                    buf=extra if tname == "ima-buf" else b"")
