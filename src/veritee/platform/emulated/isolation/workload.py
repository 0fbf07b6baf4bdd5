"""A guest workload that keeps a secret in its memory, and the scan of physical memory.

The secret is a real one from the other modules: a key the emulated AMD secure processor
derives for the guest (``MSG_KEY_REQ``, the sealing key's root) or a P-384 private key such
as a TLS server key. The workload writes it into one of its pages through the hardware rules
like any other data; :func:`scan_physical_memory` then looks for its bytes in *all* of DRAM
(frames and hardware metadata), as a cold-boot or bus attacker would.

Every access goes through the guest's own code (:class:`.GuestKernel` with a careful or a
naive :class:`.GuestPolicy`), so whether tampering is detected is decided by that code.

The workload also acts as the referee's notebook: it remembers (outside the emulated
machine) what it last wrote to each page, so an attack's result can be judged: the guest
either read back what it wrote, was told something was wrong, or silently got other bytes.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec

from veritee.errors import PlatformError
from veritee.formats.sevsnp import GuestFieldSelect, MsgKeyReq
from veritee.platform.emulated.isolation.guest import Guest
from veritee.platform.emulated.isolation.kernel import CarefulGuest, GuestKernel, GuestPolicy
from veritee.platform.emulated.isolation.memory import PAGE_SIZE
from veritee.platform.emulated.isolation.stack import Machine
from veritee.platform.emulated.snp import EmulatedSnpGuest

__all__ = [
    "SECRET_OFFSET",
    "SLOT_OFFSET",
    "SecretKeepingWorkload",
    "p384_private_key_secret",
    "scan_physical_memory",
    "snp_sealing_key_secret",
]

SECRET_OFFSET = 0x100
#: A 16-byte-aligned variable on the secret's page that a constant-time loop overwrites
#: with one of two values per secret bit (the CipherLeaks target: equal values at one
#: address encrypt equally under XTS).
SLOT_OFFSET = 0x40
_SLOT_VALUES = (b"\x00" * 16, b"\x01" + b"\x00" * 15)


def snp_sealing_key_secret(guest: EmulatedSnpGuest) -> bytes:
    """A 32-byte key the (emulated) AMD-SP derives for ``guest``, bound to its measurement
    and policy: the root a sealing key is made from (SNP ABI 56860 MSG_KEY_REQ)."""
    fields = GuestFieldSelect.MEASUREMENT | GuestFieldSelect.GUEST_POLICY
    return guest.derived_key(MsgKeyReq(guest_field_select=fields))


def p384_private_key_secret(key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """The 48-byte private scalar of a P-384 key (a fresh one unless given), e.g. a TLS key."""
    key = key or ec.generate_private_key(ec.SECP384R1())
    return key.private_numbers().private_value.to_bytes(48, "big")


class SecretKeepingWorkload:
    """A guest application that keeps ``secret`` in page ``secret_page`` of its memory."""

    def __init__(self, machine: Machine, guest: Guest, secret: bytes, *,
                 policy: GuestPolicy | None = None, secret_page: int = 1,
                 other_page: int = 0) -> None:
        if not 16 <= len(secret) <= PAGE_SIZE - SECRET_OFFSET - 8:
            raise PlatformError(f"secret must be 16..{PAGE_SIZE - SECRET_OFFSET - 8} bytes")
        if guest.pages < 2 or secret_page == other_page:
            raise PlatformError("the workload needs two distinct pages")
        self.machine = machine
        self.guest = guest
        self.kernel = GuestKernel(machine, guest, policy or CarefulGuest())
        self.secret = secret
        self.secret_page = secret_page
        self.other_page = other_page
        self._expected: dict[int, bytes] = {}
        self._versions = [0] * guest.pages
        for page in range(guest.pages):
            self.write(page, self._content(page))

    def _content(self, page: int) -> bytes:
        """Recognisable, page- and version-specific filler; the secret on its page."""
        seed = f"veritee workload page {page} v{self._versions[page]}".encode()
        body = bytearray(hashlib.shake_256(seed).digest(PAGE_SIZE))
        if page == self.secret_page:
            body[SECRET_OFFSET:SECRET_OFFSET + len(self.secret)] = self.secret
        return bytes(body)

    # -- the guest's own accesses (through the hardware rules) -----------------------------
    def write(self, page: int, data: bytes) -> None:
        """Store a page (through the guest kernel) and remember what was stored."""
        self.kernel.store(page, data)
        self._expected[page] = data

    def read(self, page: int) -> bytes:
        """Load a page through the guest kernel (may raise the hardware's faults, or
        :class:`.GuestTerminated` when the guest's code detects tampering)."""
        return self.kernel.load(page)

    def serve(self) -> bytes:
        """A guest network service: return the plaintext of ``other_page`` to a client.

        What it returns leaves the VM in the clear: the hypervisor sees it (SEVered)."""
        return self.read(self.other_page)

    def secret_bits(self, n: int) -> list[int]:
        """The first ``n`` bits of the secret, most significant first."""
        value = int.from_bytes(self.secret, "big")
        return [value >> (8 * len(self.secret) - 1 - i) & 1 for i in range(n)]

    def constant_time_step(self, bit: int) -> None:
        """One iteration of a constant-time loop over a secret bit: the same instructions
        for either value, one 16-byte variable on the secret's page set to 0 or 1."""
        body = bytearray(self.expected(self.secret_page))
        body[SLOT_OFFSET:SLOT_OFFSET + 16] = _SLOT_VALUES[bit]
        self.write(self.secret_page, bytes(body))

    def update(self, page: int) -> None:
        """Write a new version of a page (the secret stays where it is)."""
        self._versions[page] += 1
        self.write(page, self._content(page))

    def use_secret(self) -> bytes:
        """Read the secret back from memory, as the application does when it needs it."""
        return self.read(self.secret_page)[SECRET_OFFSET:SECRET_OFFSET + len(self.secret)]

    # -- the referee's notebook ------------------------------------------------------------
    def expected(self, page: int) -> bytes:
        """What the guest last wrote to ``page``."""
        return self._expected[page]

    def secret_frame(self) -> int:
        """The frame currently backing the secret's page."""
        frame = self.guest.frame(self.secret_page)
        if frame is None:
            raise PlatformError("the secret's page is not mapped")
        return frame


def scan_physical_memory(machine: Machine, secret: bytes) -> list[int]:
    """Every physical address in DRAM (frames and metadata) where ``secret`` occurs."""
    return machine.memory.find_all(secret)
