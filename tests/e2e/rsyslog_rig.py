"""A real Debian rsyslogd as the SIEM's TLS syslog receiver, for end-to-end tests.

Rules:
- Each receiver is its own `rsyslogd -n` (foreground) with its own config,
  work directory, pid file and output in a test's tmp dir, listening on an
  unprivileged port of 127.0.0.1. The system's rsyslog is never touched.
- Input: imtcp with the GnuTLS netstream driver (gtls; ossl if that is what
  is installed), TLS only. `mutual=True` asks for a client certificate that
  chains to the test CA (`x509/certvalid`); otherwise only the server proves
  who it is (`anon`).
- Output: one JSON object per received message: the raw message and what
  rsyslog itself parsed from it (header fields, and the structured data
  through mmpstrucdata). rsyslog is the parser here, not our code.
- Certificates are made with `cryptography`: a CA, a server certificate for
  localhost and 127.0.0.1, a client certificate, and a client certificate
  from a second CA that the receiver does not trust.
- Waiting is for a condition with a deadline. `receivers(tmp_path)` stops
  every receiver it made, whatever the test did.

Use from a test module in tests/e2e:

    @pytest.fixture
    def rsyslog(tmp_path):
        with rsyslog_rig.receivers(tmp_path) as make:
            yield make          # make(mutual=False) -> Rsyslog (started)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import glob
import ipaddress
import json
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from waiting import wait_for

POLL = 0.01

# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from a CA nobody trusts
    rogue_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _authority(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    purpose: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_pki(directory: Path) -> Pki:
    """A CA, server and client certificates, and a rogue client, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _authority("shimmfa test SIEM CA")
    rogue_ca = _authority("shimmfa test rogue CA")
    server = _leaf(
        ca,
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _leaf(ca, "shim-e2e", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("shim-e2e")])
    rogue = _leaf(rogue_ca, "shim-e2e", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("shim-e2e")])
    return Pki(
        ca=_write_cert(directory / "ca.pem", ca[0]),
        server_cert=_write_cert(directory / "server.pem", server[0]),
        server_key=_write_key(directory / "server.key", server[1]),
        client_cert=_write_cert(directory / "client.pem", client[0]),
        client_key=_write_key(directory / "client.key", client[1]),
        rogue_cert=_write_cert(directory / "rogue.pem", rogue[0]),
        rogue_key=_write_key(directory / "rogue.key", rogue[1]),
    )


# -- the receiver ---------------------------------------------------------------------------


def _rsyslogd() -> str | None:
    return shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")


def _tls_driver() -> str | None:
    drivers = {Path(p).stem for p in glob.glob("/usr/lib/*/rsyslog/lmnsd_*.so")}
    drivers |= {Path(p).stem for p in glob.glob("/usr/lib/rsyslog/lmnsd_*.so")}
    for name in ("gtls", "ossl"):
        if f"lmnsd_{name}" in drivers:
            return name
    return None


@cache
def unavailable_reason() -> str | None:
    """Why no rsyslog TLS receiver can run here, or None if one can."""
    binary = _rsyslogd()
    if binary is None:
        return "rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)"
    if _tls_driver() is None:
        return "no rsyslog TLS netstream driver (apt-get install rsyslog-gnutls)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int, address: str = "127.0.0.1") -> bool:
    """Is something listening on `address`:`port` (IPv4, from /proc/net/tcp)?"""
    packed = socket.inet_aton(address)[::-1].hex().upper()  # the kernel's byte order
    wanted = {f"{packed}:{port:04X}", f"00000000:{port:04X}"}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] in wanted and fields[3] == "0A":
            return True
    return False


_TEMPLATE = (
    '{"raw":"%rawmsg:::json%","pri":"%pri%","timestamp":"%timereported:::date-rfc3339%",'
    '"hostname":"%hostname:::json%","app":"%app-name:::json%","procid":"%procid:::json%",'
    '"msgid":"%msgid:::json%","msg":"%msg:::json%","sd":"%$!:::json%",'
    '"peer":"%fromhost-ip%"}\n'
)


class Rsyslog:
    """One rsyslogd receiving syslog over TLS into `output`."""

    def __init__(
        self, directory: Path, pki: Pki, *, mutual: bool = False, address: str = "127.0.0.1"
    ) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.directory = directory
        self.pki = pki
        self.mutual = mutual
        self.address = address
        self.port = free_port()
        self.output = directory / "received.jsonl"
        self.log = directory / "rsyslogd.log"
        self.config = directory / "rsyslog.conf"
        self.pid_file = directory / "rsyslogd.pid"
        work = directory / "work"
        work.mkdir(parents=True, exist_ok=True)
        driver = _tls_driver()
        auth = "x509/certvalid" if mutual else "anon"
        self.config.write_text(
            f"""
global(workDirectory="{work}" maxMessageSize="64k" net.enableDNS="off"
       parser.escapeControlCharactersOnReceive="off")
module(load="imtcp" streamDriver.name="{driver}" streamDriver.mode="1"
       streamDriver.authMode="{auth}")
module(load="mmpstrucdata")
template(name="shimmfa_e2e" type="string" string={json.dumps(_TEMPLATE)})
input(type="imtcp" address="{address}" port="{self.port}" ruleset="siem"
      streamDriver.caFile="{pki.ca}" streamDriver.certFile="{pki.server_cert}"
      streamDriver.keyFile="{pki.server_key}")
ruleset(name="siem") {{
    action(type="mmpstrucdata" sd_name.lowercase="off")
    action(type="omfile" file="{self.output}" template="shimmfa_e2e")
}}
action(type="omfile" file="{directory / "internal.log"}")
""",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        host = "localhost" if self.address == "127.0.0.1" else self.address
        return f"tls://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            raise RuntimeError("rsyslogd is running already")
        binary = _rsyslogd()
        assert binary is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-n", "-f", str(self.config), "-i", str(self.pid_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not listening(self.port, self.address):
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise AssertionError(f"rsyslogd exited with {code}: {self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"rsyslogd not listening after {timeout} s")
            time.sleep(POLL)

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        files = (self.log, self.directory / "internal.log")
        return "\n".join(p.read_text(errors="replace") for p in files if p.exists())

    def received(self) -> list[dict[str, Any]]:
        """Every message received so far; `sd` is rsyslog's parse of the
        structured data ({} when there is none)."""
        if not self.output.exists():
            return []
        messages = []
        for line in self.output.read_text(encoding="utf-8").splitlines():
            if not line.endswith("}"):
                continue  # rsyslog is still writing this line
            message = json.loads(line)
            message["sd"] = json.loads(message["sd"]).get("rfc5424-sd", {}) if message["sd"] else {}
            messages.append(message)
        return messages

    def wait_received(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:

        def ready() -> tuple[list[dict[str, Any]]] | None:
            messages = self.received()
            return (messages,) if predicate(messages) else None  # true even when empty

        def state() -> str:
            return f"{len(self.received())} messages; its log:\n{self.log_text()[-2000:]}"

        return wait_for(ready, "rsyslog to receive them", timeout, detail=state)[0]


@contextmanager
def receivers(tmp_path: Path) -> Iterator[Callable[..., Rsyslog]]:
    """`make(mutual=False, start=True, address="127.0.0.1") -> Rsyslog`;
    all stopped at the end."""
    made: list[Rsyslog] = []
    pki = make_pki(tmp_path / "pki")

    def make(*, mutual: bool = False, start: bool = True, address: str = "127.0.0.1") -> Rsyslog:
        directory = tmp_path / f"rsyslog{len(made)}"
        receiver = Rsyslog(directory, pki, mutual=mutual, address=address)
        made.append(receiver)
        if start:
            receiver.start()
        return receiver

    try:
        yield make
    finally:
        for receiver in made:
            receiver.stop()


class HungReceiver:
    """A plain TCP listener that accepts connections and never reads from
    them; a small receive buffer (`rcvbuf`) makes the sender's bytes stay
    unacknowledged soon. For "a hung SIEM must not slow anything" tests."""

    def __init__(self, rcvbuf: int = 2048) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)

    def unread(self) -> int:
        """Bytes the sender got into our receive queues, never read."""
        total = 0
        for connection in list(self.connections):
            raw = fcntl.ioctl(connection.fileno(), termios.FIONREAD, b"\0\0\0\0")
            total += struct.unpack("i", raw)[0]
        return total

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()
