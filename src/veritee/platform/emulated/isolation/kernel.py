"""Guest code: the part of the TEE that decides whether tampering was *detected*.

The hardware's rules (:mod:`.rmp`, :mod:`.epc`) raise exceptions; what the guest does with
them is software, and that software is where detection is decided. A :class:`GuestKernel`
runs every access of the workload through the hardware and hands each exception to its
:class:`GuestPolicy`:

* :class:`CarefulGuest` keeps a bitmap of the pages it knows are validated (launch pages
  validated by the firmware with SNP_LAUNCH_UPDATE, pages it PVALIDATEd itself; for an
  enclave: EADDed or EACCEPTed pages; for a TD: TDH.MEM.PAGE.ADDed or accepted pages). On
  a #VC NOT_VALIDATED (0x404) for a page in the bitmap (a #PF on a PENDING page for an
  enclave, a #VE for a TD) it terminates (GHCB termination request): the page changed
  behind its back. It refuses to validate a page twice, and treats a PVALIDATE that
  reports "no update" (rFLAGS.CF=1) as tampering. This is the "validate each GPA once"
  discipline of the SEV-SNP whitepaper ("Page Validation") and of Linux's SNP guest code.
* :class:`NaiveGuest` does what a minimal #VC handler does (the KVM SEV selftests' handler
  PVALIDATEs on every SVM_EXIT_NOT_VALIDATED): validate and retry, ignore "no update". An
  enclave runtime that EACCEPTs every pending page it faults on is the SGX2 equivalent, a
  TD that TDG.MEM.PAGE.ACCEPTs every #VE'd page the TDX one.

A cell is ``DETECTED_BY_GUEST`` only when this code raised :class:`.GuestTerminated`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation import sources
from veritee.platform.emulated.isolation.epc import SgxRules
from veritee.platform.emulated.isolation.faults import (
    GuestException,
    GuestTerminated,
    UndefinedInstruction,
    VcCode,
)
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.rmp import SnpRules
from veritee.platform.emulated.isolation.tdx import TdxRules

if TYPE_CHECKING:  # pragma: no cover - typing only
    from veritee.platform.emulated.isolation.stack import Machine

__all__ = ["GUEST_POLICIES", "CarefulGuest", "GuestKernel", "GuestPolicy", "NaiveGuest"]


class GuestPolicy(ABC):
    """What the guest's code does when the hardware tells it a page is not (yet) its own."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def on_unaccepted(self, kernel: GuestKernel, page: int, exc: GuestException) -> None:
        """Handle a #VC NOT_VALIDATED (SEV-SNP) or a #PF on a PENDING page (SGX2): accept
        the page (then the access is retried) or raise :class:`.GuestTerminated`."""

    @abstractmethod
    def after_pvalidate(self, kernel: GuestKernel, page: int, validate: bool,
                        changed: bool) -> None:
        """Check PVALIDATE's result; raise :class:`.GuestTerminated` to refuse it."""


class NaiveGuest(GuestPolicy):
    """Validates (or EACCEPTs) whatever faults, and ignores PVALIDATE's "no update"."""

    name = "naive"
    description = ("re-validates on every #VC 0x404 (as the KVM SEV selftests' handler "
                   "does) and EACCEPTs every pending page; ignores PVALIDATE's no-update")

    def on_unaccepted(self, kernel: GuestKernel, page: int, exc: GuestException) -> None:
        """Accept the page and let the access retry."""
        kernel.trace(f"naive guest: {exc}; accepting the page and retrying")
        kernel.accept(page)

    def after_pvalidate(self, kernel: GuestKernel, page: int, validate: bool,
                        changed: bool) -> None:
        """Nothing to check."""


class CarefulGuest(GuestPolicy):
    """Validates each page once: a bitmap of validated pages, terminate on any surprise."""

    name = "careful"
    description = ("keeps a validated-pages bitmap; terminates on #VC 0x404 for a page in "
                   "it, refuses a second validation, and treats PVALIDATE no-update as "
                   "tampering")

    def on_unaccepted(self, kernel: GuestKernel, page: int, exc: GuestException) -> None:
        """Terminate if the page is one the guest already validated; else accept it once."""
        if page in kernel.guest.validated:
            if isinstance(kernel.machine.rules, TdxRules):
                raise GuestTerminated(
                    f"careful TD: {exc}, on page {page:#x}, which it already accepted: the "
                    "page was removed and re-added; terminating",
                    rule="TD policy: #VE on a page already accepted -> terminate, never "
                    "re-accept", source=sources.TDX_SEPT)
            if isinstance(kernel.machine.rules, SgxRules):
                raise GuestTerminated(
                    f"careful enclave: {exc}, but it never asked for page {page:#x} (its "
                    "bitmap says it already has it): the page was replaced; aborting",
                    rule="enclave policy: a PENDING page it did not request -> abort, "
                    "never EACCEPT", source=sources.SDM_SGX2)
            raise GuestTerminated(
                f"careful guest: {exc} on page {page:#x}, which its bitmap says it already "
                "validated: the page was replaced; terminating",
                rule="guest policy: #VC NOT_VALIDATED on a page in the validated bitmap -> "
                "terminate", source=sources.SNP_WHITEPAPER)
        kernel.trace(f"careful guest: {exc} on a page it never validated; validating once")
        kernel.accept(page)

    def after_pvalidate(self, kernel: GuestKernel, page: int, validate: bool,
                        changed: bool) -> None:
        """A no-update result means the RMP disagrees with the bitmap: terminate."""
        if not changed:
            if isinstance(kernel.machine.rules, TdxRules):
                raise GuestTerminated(
                    f"careful TD: TDG.MEM.PAGE.ACCEPT of page {page:#x} reported "
                    "TDX_PAGE_ALREADY_ACCEPTED; terminating",
                    rule="TD policy: accept each page once", source=sources.TDX_SEPT)
            what = "validate" if validate else "rescind"
            raise GuestTerminated(
                f"careful guest: PVALIDATE ({what}) of page {page:#x} reported no update: "
                "the hypervisor substituted the frame; terminating",
                rule="guest policy: PVALIDATE FAIL_NOUPDATE -> terminate",
                source=sources.APM_PVALIDATE)


GUEST_POLICIES: dict[str, GuestPolicy] = {p.name: p for p in (CarefulGuest(), NaiveGuest())}


class GuestKernel:
    """The guest's memory code: accesses, #VC handling, validation, page-state changes."""

    def __init__(self, machine: Machine, guest: Guest, policy: GuestPolicy) -> None:
        self.machine = machine
        self.guest = guest
        self.policy = policy
        self.log: list[str] = []
        self.sink: Callable[[str], None] | None = None

    def trace(self, line: str) -> None:
        """Record what the guest's code did (and pass it to ``sink``, an attack's trace)."""
        self.log.append(line)
        if self.sink is not None:
            self.sink(f"guest: {line}")

    def _retry(self, page: int, access: str) -> None:
        raise GuestTerminated(f"{access} of page {page:#x} still faults after accepting it",
                              rule="guest: repeated fault after accept -> terminate",
                              source=sources.SNP_WHITEPAPER)

    def load(self, page: int) -> bytes:
        """Read a page; #VC / pending-page faults go to the policy, once."""
        try:
            return self.machine.guest_load(self.guest, page)
        except GuestException as exc:
            self._unaccepted(page, exc)
        try:
            return self.machine.guest_load(self.guest, page)
        except GuestException:
            self._retry(page, "load")
            raise  # pragma: no cover - _retry always raises

    def store(self, page: int, data: bytes) -> None:
        """Write a page; #VC / pending-page faults go to the policy, once."""
        try:
            self.machine.guest_store(self.guest, page, data)
            return
        except GuestException as exc:
            self._unaccepted(page, exc)
        try:
            self.machine.guest_store(self.guest, page, data)
        except GuestException:
            self._retry(page, "store")

    def _unaccepted(self, page: int, exc: GuestException) -> None:
        rules = self.machine.rules
        if isinstance(rules, SnpRules) and exc.code != VcCode.NOT_VALIDATED:
            raise GuestTerminated(f"unhandled #VC: {exc}", rule="guest: unhandled #VC",
                                  source=sources.APM_RMP) from exc
        self.policy.on_unaccepted(self, page, exc)

    def accept(self, page: int) -> None:
        """PVALIDATE (SEV-SNP) or EACCEPT (SGX2) a page, and record it in the bitmap."""
        rules = self.machine.rules
        if isinstance(rules, SgxRules):
            rules.eaccept(self.guest, page)
            self.guest.validated.add(page)
            return
        if isinstance(rules, TdxRules):
            changed = rules.accept(self.guest, page)
            self.trace(f"TDG.MEM.PAGE.ACCEPT page {page:#x}: "
                       f"{'accepted' if changed else 'TDX_PAGE_ALREADY_ACCEPTED'}")
            self.policy.after_pvalidate(self, page, True, changed)
            self.guest.validated.add(page)
            return
        self.pvalidate(page, validate=True)

    def pvalidate(self, page: int, *, validate: bool) -> None:
        """PVALIDATE through the policy's checks; keep the bitmap in step."""
        rules = self.machine.rules
        if not isinstance(rules, SnpRules):
            raise UndefinedInstruction(f"#UD: PVALIDATE in a {self.machine.mode.value} guest",
                                       source=sources.UD)
        changed = rules.pvalidate(self.guest, page, validate=validate)
        self.trace(f"PVALIDATE page {page:#x} validate={int(validate)}: "
                   f"{'updated' if changed else 'FAIL_NOUPDATE (rFLAGS.CF=1)'}")
        self.policy.after_pvalidate(self, page, validate, changed)
        if validate:
            self.guest.validated.add(page)
        else:
            self.guest.validated.discard(page)

    def set_shared(self, page: int, shared: bool) -> None:
        """A page-state change the guest asks for (GHCB Page State Change).

        Private -> shared: rescind validation, then ask the hypervisor. Shared -> private:
        ask the hypervisor, then validate. Under ``sev`` only the C-bit changes; ``plain``
        and the SGX modes have no shared pages (an enclave uses untrusted memory outside
        its ELRANGE instead); TDX's shared memory (MapGPA, the shared EPT) is not modelled.
        """
        mode = self.machine.mode
        if mode.sgx or mode in (Mode.PLAIN, Mode.TDX):
            raise UndefinedInstruction(f"{mode.value}: no private/shared page states",
                                       rule="no private/shared page-state protocol",
                                       source=sources.UD)
        hypervisor = self.machine.hypervisor
        if shared:
            if isinstance(self.machine.rules, SnpRules):
                self.pvalidate(page, validate=False)
            hypervisor.page_state_change(self.guest, page, shared=True)
            self.guest.shared.add(page)
        else:
            hypervisor.page_state_change(self.guest, page, shared=False)
            self.guest.shared.discard(page)
            if isinstance(self.machine.rules, SnpRules):
                self.pvalidate(page, validate=True)


def policy_named(name: str) -> GuestPolicy:
    """The guest policy called ``name`` ("careful" or "naive")."""
    try:
        return GUEST_POLICIES[name]
    except KeyError:
        raise PlatformError(f"unknown guest policy {name!r}: want one of "
                            f"{', '.join(GUEST_POLICIES)}") from None
