"""The ``swtpm`` process: manufacture a TPM 2.0 with an EK certificate, start it, stop it.

Debian's ``swtpm`` / ``swtpm-tools`` (libtpms, the TCG reference TPM 2.0 code) run as a child
process on a private Unix socket. Manufacturing uses ``swtpm_setup`` with a *private*
``swtpm_localca`` configuration, so the local CA (a self-signed root and an intermediate
signing key, created on first use) lives in the platform's state directory, never in
``/var/lib/swtpm-localca``. ``swtpm_setup --create-ek-cert`` creates the RSA-2048 and ECC P-384
EKs (persistent 0x81010001 and 0x81010016), has ``swtpm_localca`` sign their certificates and
stores them in the TPM's NV indices 0x01C00002 and 0x01C00016 (TCG EK Credential Profile 2.0,
"EK certificate NV indices"), as a TPM vendor does at manufacturing.

Nothing here talks TPM commands: that is :mod:`veritee.platform.tpm` through tpm2-pytss.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from veritee.errors import PlatformError

__all__ = ["SwtpmLayout", "SwtpmProcess", "manufacture", "missing_tools"]

TOOLS = ("swtpm", "swtpm_setup", "swtpm_localca", "swtpm_ioctl")
# Banks active after manufacturing (swtpm_setup --pcr-banks): SHA-1 kept next to SHA-256 so
# event logs carry two banks, as real firmware logs do; quotes use SHA-256.
PCR_BANKS = "sha1,sha256"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def missing_tools() -> list[str]:
    """The swtpm programs not found on ``PATH`` ([] when the platform can run)."""
    return [t for t in TOOLS if shutil.which(t) is None]


def _tool(name: str) -> str:
    """The absolute path of a swtpm program (PlatformError when absent)."""
    path = shutil.which(name)
    if path is None:
        raise PlatformError(f"{name} not found (Debian packages swtpm, swtpm-tools)")
    return path


@dataclass(frozen=True)
class SwtpmLayout:
    """Where one software TPM keeps its state (the NV file) and its local CA."""

    root: Path

    @property
    def tpm_state(self) -> Path:
        """libtpms' persistent state (``tpm2-00.permall``): seeds, NV, persistent keys."""
        return self.root / "tpm"

    @property
    def ca_dir(self) -> Path:
        """The private ``swtpm_localca`` state: root CA, intermediate key and certificate."""
        return self.root / "ca"

    @property
    def root_ca(self) -> Path:
        """The self-signed root certificate ``swtpm_localca`` created (PEM)."""
        return self.ca_dir / "swtpm-localca-rootca-cert.pem"

    @property
    def intermediate_ca(self) -> Path:
        """The intermediate (issuer) certificate that signs EK certificates (PEM)."""
        return self.ca_dir / "issuercert.pem"

    @property
    def manufactured(self) -> bool:
        """True once ``swtpm_setup`` has written the TPM state and the CA."""
        return ((self.tpm_state / "tpm2-00.permall").is_file() and self.root_ca.is_file()
                and self.intermediate_ca.is_file())


def _run(argv: list[str], what: str) -> None:
    try:
        # A fixed program and our own paths, no shell.
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,  # noqa: S603
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PlatformError(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PlatformError(f"{what} failed (exit {done.returncode}): {' / '.join(tail)}")


def manufacture(layout: SwtpmLayout) -> None:
    """Create the TPM state, its EKs and EK certificates (idempotent).

    swtpm_setup passes the TPM's own attributes to swtpm_localca: manufacturer
    ``id:00001014`` (IBM, the libtpms authors), model ``swtpm``, spec 2.0.
    """
    if layout.manufactured:
        return
    missing = missing_tools()
    if missing:
        raise PlatformError(f"swtpm tools not installed: {', '.join(missing)} (Debian packages "
                            "swtpm, swtpm-tools)")
    for d in (layout.root, layout.tpm_state, layout.ca_dir):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = layout.root / "config"
    conf.mkdir(exist_ok=True, mode=0o700)
    # swtpm_localca's configuration (see swtpm-localca.conf(8)): a CA of our own.
    (conf / "swtpm-localca.conf").write_text(
        f"statedir = {layout.ca_dir}\n"
        f"signingkey = {layout.ca_dir / 'signkey.pem'}\n"
        f"issuercert = {layout.intermediate_ca}\n"
        f"certserial = {layout.ca_dir / 'certserial'}\n")
    (conf / "swtpm-localca.options").write_text(
        "--platform-manufacturer veritee\n--platform-version 2.1\n--platform-model swtpm\n")
    (conf / "swtpm_setup.conf").write_text(
        f"create_certs_tool = {_tool('swtpm_localca')}\n"
        f"create_certs_tool_config = {conf / 'swtpm-localca.conf'}\n"
        f"create_certs_tool_options = {conf / 'swtpm-localca.options'}\n"
        f"active_pcr_banks = {PCR_BANKS}\n")
    _run([_tool("swtpm_setup"), "--tpm2", "--tpmstate", str(layout.tpm_state), "--createek",
          "--create-ek-cert", "--pcr-banks", PCR_BANKS, "--config",
          str(conf / "swtpm_setup.conf"), "--logfile", str(layout.root / "setup.log"),
          "--overwrite"], "swtpm_setup")
    if not layout.manufactured:
        raise PlatformError(f"swtpm_setup left no TPM state or CA in {layout.root}")


class SwtpmProcess:
    """One running ``swtpm socket --tpm2`` on a private Unix socket.

    The socket lives in a fresh ``0700`` temporary directory (short path: Unix socket paths
    are limited to 108 bytes); the control channel is ``<socket>.ctrl``, where the swtpm TCTI
    of tpm2-tss looks for it. ``--flags startup-clear`` makes swtpm run TPM2_Startup(CLEAR)
    itself, as platform firmware does at power-on: PCRs start at their reset values.
    """

    def __init__(self, layout: SwtpmLayout) -> None:
        if not layout.manufactured:
            raise PlatformError(f"{layout.root}: no manufactured swtpm state")
        self.layout = layout
        self._run_dir = Path(tempfile.mkdtemp(prefix="veritee-swtpm-"))
        self.socket = self._run_dir / "tpm.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> tuple[str, str]:
        """(TCTI name, configuration) for tpm2-tss: the ``swtpm`` TCTI on the socket."""
        return "swtpm", f"path={self.socket}"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Power on: start swtpm and wait until both sockets accept connections."""
        if self.running:
            return
        # swtpm's stderr goes to a file (a pipe nobody reads could fill and stall it); no
        # --log: at level 1 it writes a line per client connection, i.e. per command.
        errors = self._stderr_path
        argv = [_tool("swtpm"), "socket", "--tpm2", "--tpmstate", f"dir={self.layout.tpm_state}",
                "--server", f"type=unixio,path={self.socket}",
                "--ctrl", f"type=unixio,path={self.socket}.ctrl",
                "--flags", "startup-clear"]
        try:
            with errors.open("wb") as err_file:
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,  # noqa: S603
                                              stdout=subprocess.DEVNULL, stderr=err_file)
        except OSError as exc:
            raise PlatformError(f"cannot start swtpm: {exc}") from None
        deadline = time.monotonic() + _START_TIMEOUT
        ctrl = Path(f"{self.socket}.ctrl")
        while not (self.socket.exists() and ctrl.exists()):
            if self._proc.poll() is not None:
                self._proc = None
                raise PlatformError(f"swtpm exited at start: {self._stderr()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PlatformError("swtpm did not open its socket in time")
            time.sleep(0.01)

    def exit_message(self, wait: float = 1.0) -> str | None:
        """What swtpm wrote to stderr if it exits within ``wait`` seconds, else None: why a
        start whose sockets opened still failed (swtpm binds its sockets before it takes the
        state's lock, so a second swtpm on the same state exits only after that)."""
        if self._proc is None:
            return None
        try:
            self._proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        return self._stderr()

    @property
    def _stderr_path(self) -> Path:
        return self.layout.root / "swtpm.stderr"

    def _stderr(self) -> str:
        """The start of what swtpm wrote to stderr (why it exited)."""
        return self._stderr_path.read_text(errors="replace").strip()[:300]

    def stop(self) -> None:
        """Power off: ask swtpm to shut down over its control channel (it saves its NV state),
        then make sure the process is gone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([_tool("swtpm_ioctl"), "--unix",  # noqa: S603
                                f"{self.socket}.ctrl", "-s"],
                               capture_output=True, timeout=_STOP_TIMEOUT, check=False)
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for p in (self.socket, Path(f"{self.socket}.ctrl")):
            with contextlib.suppress(OSError):
                p.unlink()

    def cleanup(self) -> None:
        """Stop, and remove the private socket directory (the TPM state stays)."""
        self.stop()
        with contextlib.suppress(OSError):
            os.rmdir(self._run_dir)
