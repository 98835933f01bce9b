"""Test doubles for classifier.fetch: a fake resolver, a loopback-only connector, raw loopback servers.

Nothing here ever opens a connection to a non-loopback address: ``LoopbackOnlyConnector``
refuses (and records) any other address before a socket exists, and the servers bind
127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
LOOPBACK_V6 = ipaddress.ip_network("::1/128")


class ForbiddenConnect(BaseException):
    """A test tried to connect somewhere other than loopback: the fetcher's guard failed.

    A BaseException, so the fetcher's own error boundary (``except Exception``) cannot turn it into
    a 500 that a test expecting "some error" would accept: it always fails the test."""


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip in LOOPBACK or ip in LOOPBACK_V6


def refuse_non_loopback(monkeypatch) -> None:
    """The tests' safety net: ``socket.connect`` and ``socket.getaddrinfo`` refuse anything but loopback."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            raise ForbiddenConnect(f"connect to {address!r} attempted in a test")
        return real_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        try:
            numeric = is_loopback(str(host))
        except ValueError:
            numeric = False
        if not numeric:
            raise ForbiddenConnect(f"real DNS lookup of {host!r} attempted in a test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


class FakeResolver:
    """getaddrinfo-compatible resolver from a {host: [addresses]} map; records every lookup.

    A value may be a callable returning the addresses (to change answers between calls, as a
    DNS-rebinding attacker would), or an exception instance to raise.
    """

    def __init__(self, mapping: dict[str, object] | None = None) -> None:
        self.mapping = dict(mapping or {})
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.calls.append((host, port))
        answer = self.mapping.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer()
        out = []
        for address in answer:
            if ":" in address:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return out

    @property
    def hosts(self) -> list[str]:
        return [host for host, _ in self.calls]


class LoopbackOnlyConnector:
    """The connector seam for tests: records every attempt, connects to loopback only.

    ``refuse`` lists addresses to answer with ConnectionRefusedError (no socket is made).
    """

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.attempts: list[tuple[str, int]] = []
        self.refuse = set(refuse)

    def __call__(self, address: str, port: int, timeout: float) -> socket.socket:
        self.attempts.append((address, port))
        if not is_loopback(address):
            raise ForbiddenConnect(f"test tried to connect to non-loopback {address}:{port}")
        if address in self.refuse:
            raise ConnectionRefusedError(111, "Connection refused")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except BaseException:
            sock.close()
            raise
        return sock


# --- a raw HTTP/1.x server on loopback --------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    sni: str | None = None


Route = Callable[[socket.socket, Request], None]


@dataclass
class LoopbackServer:
    """A tiny threaded HTTP server on 127.0.0.1 whose routes write raw bytes (so they can lie)."""

    routes: dict[str, Route]
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    tls_errors: list[str] = field(default_factory=list)
    snis: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        if self.tls is not None:
            self.tls.sni_callback = self._on_sni
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _on_sni(self, ssl_sock, server_name, context) -> None:
        self.snis.append(server_name)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.tls_errors.append(type(exc).__name__)
                    return
                self._conns.append(conn)
            raw = b""
            while b"\r\n\r\n" not in raw:
                data = conn.recv(4096)
                if not data:
                    return
                raw += data
            head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            request = Request(method, path, headers, self.snis[-1] if self.snis else None)
            self.requests.append(request)
            route = self.routes.get(path.split("?")[0])
            if route is None:
                send(conn, 404, b"not found", content_type="text/plain")
            else:
                route(conn, request)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def url(self, path: str = "/", host: str = "127.0.0.1", scheme: str | None = None) -> str:
        scheme = scheme or ("https" if self.tls is not None else "http")
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass


def send(conn: socket.socket, status: int, body: bytes = b"", *, content_type: str = "image/png",
         headers: dict[str, str] | None = None, content_length: int | None | str = "auto") -> None:
    """Write a whole HTTP/1.1 response (optionally with a lying or missing Content-Length)."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", "Connection: close"]
    if content_length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def redirect(location: str, status: int = 302) -> Route:
    def route(conn: socket.socket, request: Request) -> None:
        send(conn, status, b"", headers={"Location": location}, content_type="text/plain")
    return route


def image(body: bytes, content_type: str = "image/png") -> Route:
    def route(conn: socket.socket, request: Request) -> None:
        send(conn, 200, body, content_type=content_type)
    return route


class Outcome:
    """How a test server's route ended, told once it has: ``wait()`` returns ``"client closed"`` when
    the fetcher hung up first (a send failed), else what the route says (``"gave up"``, ``"sent all"``)."""

    def __init__(self) -> None:
        self.value: str | None = None
        self._done = threading.Event()

    def end(self, value: str) -> None:
        self.value = value
        self._done.set()

    def wait(self, limit: float = 30.0) -> str | None:
        self._done.wait(limit)
        return self.value


def trickle(byte_every: float, total: int, *, headers_first: bool = True, give_up_after: float = 5.0,
            header_padding: int = 0) -> Route:
    """Send ``total`` bytes one at a time, ``byte_every`` seconds apart (a slow-loris upstream); with
    ``headers_first=False`` the headers too, lengthened by an ``X-Pad`` header of ``header_padding`` bytes.

    Stops after ``give_up_after`` seconds so that a regression fails the test instead of hanging it;
    ``route.outcome`` says whether the client hung up first ("client closed") or the server gave up.
    """
    outcome = Outcome()

    def route(conn: socket.socket, request: Request) -> None:
        started = time.monotonic()
        pad = f"X-Pad: {'a' * header_padding}\r\n" if header_padding else ""
        head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {total}\r\n{pad}\r\n".encode()
        if headers_first:
            conn.sendall(head)
            payload = b"x" * total
        else:
            payload = head + b"x" * total
        try:
            for i in range(len(payload)):
                if time.monotonic() - started > give_up_after:
                    return outcome.end("gave up")
                conn.sendall(payload[i : i + 1])
                time.sleep(byte_every)
        except OSError:
            return outcome.end("client closed")
        outcome.end("sent all")

    route.outcome = outcome
    return route


# --- TLS material for a fake public host name ---------------------------------------------


def make_tls_material(directory: Path, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf certificate for ``hostnames`` (DNS SANs). Returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fetch-tests CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path
