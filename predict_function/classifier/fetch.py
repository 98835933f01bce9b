"""Fetch an image from a URL that a stranger sent, without letting them reach inside the account.

The function runs next to its AWS credentials, the Lambda Runtime API (a loopback
address), the instance/ECS metadata services (169.254.169.254, 169.254.170.2) and,
inside a VPC, private networks. ``fetch_url`` only ever talks to public addresses:

1. The URL is parsed strictly: ``http``/``https`` only, no userinfo, no control
   characters or backslashes, port in ``allowed_ports``, host in ``allowed_hosts`` if
   that list is set. Hosts are normalised the way the OS and browsers would read them
   (percent-decoding, IDNA, one trailing dot, every ``inet_aton`` spelling of IPv4 such
   as ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``, bracketed IPv6).
2. Host names are resolved once (``FetchPolicy.resolver``, default ``socket.getaddrinfo``)
   and the request is refused if ANY resolved address is not public (see
   ``classifier._netguard``): a name with one private address is either misconfigured or
   an attack, and refusing it keeps the rule simple to reason about. A name that does not
   exist gets the same 403, so callers cannot probe a private DNS zone's names, and a name
   without a dot is refused before the lookup (the resolver would try the function's own
   DNS search domains).
3. The socket is opened to the validated address itself (``FetchPolicy.connector``), so a
   DNS-rebinding attacker gets no second lookup to answer differently; at most
   ``CONNECT_ATTEMPTS_PER_FAMILY`` addresses of each family are dialled, however many the
   name has. TLS is verified
   against the host name, which is also sent as SNI and in the ``Host`` header.
4. Redirects are followed by hand, at most ``max_redirects``, each target checked like the
   original URL (and never from https to plain http). Bodies are read with
   ``Accept-Encoding: identity`` and counted while streaming against ``max_download_bytes``,
   and every byte around them too (headers, interim responses, chunk framing, trailers: see
   ``_Response``), so what one request downloads is bounded. An absolute deadline
   (``time.monotonic()``) bounds DNS, connect, TLS, headers and body together: a watchdog shuts
   the socket down when it passes, so a server trickling bytes cannot hold the function
   (``_deadline``).

``fetch_url`` returns once the response headers are in: the body comes back as ``Fetched``,
a read-only, seekable file that pulls bytes from the connection only when a read needs
them (so a decoder can work while the rest is still arriving), under every rule above: a
``Content-Length`` over the cap is refused before the first body byte, the count and the
deadline apply to each pull, and a pull takes at most 64 KiB of what has already arrived.
Closing it closes the connection: the rest of the body is never downloaded.

``ALLOW_PRIVATE_URLS=true`` (``allow_private_urls``) is the one switch that lets local tests
and the emulator fetch from loopback (127.0.0.0/8, ::1, ``localhost``). It opens nothing
else: private ranges, link-local (the instance metadata service) and the rest stay blocked.

Only ``classifier.errors`` types leave ``fetch_url`` and ``Fetched``; library exceptions are
translated in one place (``_boundary``, which both wrap, and its ``_translate``). Messages never
contain resolved addresses or library text.

HTTP is spoken by the standard library's ``http.client`` over the socket opened here (TLS by
``ssl`` on that socket), so nothing resolves names, reconnects, retries or follows redirects on
its own. (urllib3 did this before at the same connection level, itself on top of http.client;
dropping it took ~30 ms off the cold start: ``python -m bench.cold_start``.)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import io
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote, unquote, urljoin, urlsplit

from . import _netguard
from ._deadline import Deadline
from .errors import (
    BadRequestError,
    BlockedUrlError,
    ClassifierError,
    InternalError,
    PayloadTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)

log = logging.getLogger(__name__)

__all__ = ["FetchPolicy", "Fetched", "Target", "check_url", "fetch_url"]

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
"""``getaddrinfo``-compatible: ``resolver(host, port, family, type)`` -> [(family, type, proto, canonname, sockaddr)]."""

Connector = Callable[[str, int, float], socket.socket]
"""``connector(address, port, timeout)`` -> a connected socket to that exact numeric address."""

USER_AGENT = "lambda-image-classifier/0.1 (image fetcher)"
MAX_URL_LENGTH = 4096
# A name that does not exist and one that resolves to a non-public address get the same answer, so
# callers cannot probe which names a private DNS zone (a function in a VPC) holds.
NO_PUBLIC_ADDRESS = "URL host does not resolve to a public address"
CONNECT_ATTEMPTS_PER_FAMILY = 3
# What a response may carry besides its body (see _Response): the status lines and headers of the final
# response and of every interim one together (Node's http allows 16 KiB), and chunk-size lines with their
# extensions plus trailers (a body sent in 1 KiB chunks spends ~0.7 % of its size on them: 105 KB at the
# 15 MB cap; each chunk costs a few us of Python, so the allowance also bounds that CPU).
MAX_HEADER_BYTES = 64 * 1024
MAX_FRAMING_BYTES = 256 * 1024
MAX_INTERIM_RESPONSES = 5
# A header that email's parser left unread (see _Response.begin) and that decides how the body is read.
_HIDDEN_FRAMING = re.compile(r"^[\t\r ]*(content-length|transfer-encoding|content-encoding)[\t ]*:",
                             re.IGNORECASE | re.MULTILINE)
_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
# Characters that are never valid raw in a URL we accept (urlsplit silently drops some of them).
_FORBIDDEN_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_NON_ASCII_OR_SPACE = re.compile(r"[^\x21-\x7e]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_EAI_NO_SUCH_HOST = {
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY") if hasattr(socket, name)
}


def _system_resolver(*args: Any) -> Sequence[tuple[Any, ...]]:
    """``socket.getaddrinfo``, looked up at each call (so a test's guard on it applies)."""
    return socket.getaddrinfo(*args)


def _default_connector(address: str, port: int, timeout: float) -> socket.socket:
    """Open a TCP connection to a numeric address (no name resolution happens here)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class FetchPolicy:
    """Everything ``fetch_url`` needs to decide what it may fetch. Build once per cold start."""

    allow_private_urls: bool = False
    allowed_hosts: tuple[str, ...] = ()  # exact host or "*.example.com" (subdomains only)
    allowed_ports: tuple[int, ...] = (80, 443)
    max_download_bytes: int = 15 * 1024 * 1024
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_redirects: int = 3
    default_total_timeout: float = 25.0  # used when fetch_url gets no deadline
    # --- seams (tests) -------------------------------------------------------------
    resolver: Resolver = field(default=_system_resolver, repr=False, compare=False)
    connector: Connector = field(default=_default_connector, repr=False, compare=False)
    ca_bundle: str | None = None  # PEM file of trusted CAs; None: the system trust store
    # Test-only: addresses in these networks count as public (e.g. a loopback test server),
    # while everything else stays blocked. Never set from the environment.
    exempt_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    _ssl_context: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            hosts = tuple(_normalise_allow_entry(h) for h in self.allowed_hosts)
        except BadRequestError as exc:  # a configuration error: fail the cold start, not a request
            raise ValueError(f"invalid allowed_hosts entry in {self.allowed_hosts!r}") from exc
        object.__setattr__(self, "allowed_hosts", hosts)
        object.__setattr__(self, "allowed_ports", tuple(int(p) for p in self.allowed_ports))
        if self.max_download_bytes <= 0 or self.max_redirects < 0:
            raise ValueError("max_download_bytes must be positive and max_redirects non-negative")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "FetchPolicy":
        """The policy described by ``classifier.settings.Settings``; ``overrides`` set seams in tests."""
        values = dict(
            allow_private_urls=settings.allow_private_urls,
            allowed_hosts=settings.allowed_hosts,
            allowed_ports=settings.allowed_ports,
            max_download_bytes=settings.max_download_bytes,
            connect_timeout=settings.fetch_connect_timeout,
            read_timeout=settings.fetch_read_timeout,
            max_redirects=settings.max_redirects,
        )
        values.update(overrides)
        return cls(**values)

    def ssl_context(self) -> ssl.SSLContext:
        """One verifying TLS context per policy (loading the trust store is not free)."""
        if not self._ssl_context:
            context = ssl.create_default_context(cafile=self.ca_bundle)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.check_hostname = True
            context.verify_mode = ssl.CERT_REQUIRED
            self._ssl_context.append(context)
        return self._ssl_context[0]


@dataclass(frozen=True)
class Target:
    """A URL that passed every check, with the exact addresses it may be fetched from."""

    url: str  # normalised, without fragment
    scheme: str
    host: str  # ASCII (IDNA) host without brackets or trailing dot; canonical text for IP literals
    port: int
    addresses: tuple[str, ...]  # numeric, validated, in resolver order
    request_target: str  # path + query, ASCII
    host_header: str
    is_ip_literal: bool


# --- URL and host checks ---------------------------------------------------------------


def _normalise_allow_entry(entry: str) -> str:
    entry = entry.strip().lower().rstrip(".")
    literal = _netguard.parse_ipv6_literal(entry.strip("[]"))
    if literal:
        return str(literal)
    if not entry or any(c in entry for c in "/:@?#%[] \t\\"):
        # A URL ("https://img.example.com"), a port or a path never equals a request's host, so
        # every URL would be refused: a configuration error for the cold start, not 403s later.
        raise BadRequestError(f"{entry!r} is not a host name (give img.example.com or *.example.com)")
    if entry.startswith("*."):
        return "*." + _idna(entry[2:])
    host = _idna(entry)
    if _single_label(host) and not _netguard.ends_in_number(host):
        raise BadRequestError(f"{entry!r} is a single label: URLs may not name such a host (give img.example.com)")
    return host


def _single_label(host: str) -> bool:
    """A name without a dot (bar localhost): URLs may not name such a host, which the resolver would look
    up in the function's DNS search domains. (A dotted name that does not exist may be tried there too,
    after the name itself fails (resolv.conf ndots:1); its answer is checked all the same.)"""
    return "." not in host and host != "localhost"


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise BadRequestError("URL host is not a valid host name") from exc


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True
        elif host == entry:
            return True
    return False


def _split_netloc(netloc: str) -> tuple[str, str | None, bool]:
    """(host, port text or None, bracketed) from a netloc without userinfo."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise BadRequestError("URL host is not valid")
        host, rest = netloc[1:end], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BadRequestError("URL host is not valid")
        return host, (rest[1:] if rest else None), True
    host, sep, port = netloc.partition(":")
    if ":" in port:
        raise BadRequestError("URL host is not valid")
    return host, (port if sep else None), False


def _normalise_host(raw_host: str, bracketed: bool) -> tuple[str, IPv4Address | IPv6Address | None]:
    """(ASCII host, IP if it is an address literal). Raises BadRequestError if invalid."""
    if bracketed:
        address = _netguard.parse_ipv6_literal(raw_host)
        if address is None:
            raise BadRequestError("URL host is not a valid IPv6 address")
        return str(address), address
    try:
        host = unquote(raw_host, errors="strict")  # browsers percent-decode hosts too
    except UnicodeDecodeError as exc:
        raise BadRequestError("URL host is not valid") from exc
    if not host:
        raise BadRequestError("URL has no host")
    if _FORBIDDEN_URL_CHARS.search(host) or "%" in host:
        raise BadRequestError("URL host is not valid")
    host = _idna(host)
    if host.endswith("."):
        host = host[:-1]  # one trailing dot: the fully-qualified spelling of the same name
    if _netguard.ends_in_number(host):
        address = _netguard.parse_ipv4_any_spelling(host)
        if address is None:
            raise BadRequestError("URL host is not a valid IPv4 address")
        return str(address), address
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise BadRequestError("URL host is not a valid host name")
    return host, None


def _resolve(
    host: str, port: int, policy: FetchPolicy, deadline: float
) -> list[tuple[Any, ...]]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UpstreamTimeoutError("timed out before the URL host could be resolved")
    future = _dns_pool().submit(policy.resolver, host, port, 0, socket.SOCK_STREAM)
    try:
        return list(future.result(timeout=remaining))
    except concurrent.futures.TimeoutError as exc:
        future.cancel()
        raise UpstreamTimeoutError("timed out resolving the URL host") from exc
    except socket.gaierror as exc:
        if exc.errno in _EAI_NO_SUCH_HOST:  # the same answer as a private name, on every hop
            raise BlockedUrlError(NO_PUBLIC_ADDRESS) from exc
        raise
    finally:
        del future  # it holds the resolver's error, whose traceback holds this frame: no cycle


# A lookup that outlives its request keeps its thread until the resolver gives up (glibc: 5 s x 2
# attempts by default), and later lookups queue behind busy threads: with 4, five slow lookups
# made a healthy host's request time out. Threads start only when all are busy.
DNS_THREADS = 16
_dns_executor: concurrent.futures.ThreadPoolExecutor | None = None
_dns_lock = threading.Lock()


def _dns_pool() -> concurrent.futures.ThreadPoolExecutor:
    # A few threads so a resolver that hangs past the deadline cannot hold the request;
    # a stuck lookup ends on the resolver's own timeout (resolv.conf) and frees its thread.
    global _dns_executor
    with _dns_lock:
        if _dns_executor is None:
            _dns_executor = concurrent.futures.ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="fetch-dns")
        return _dns_executor


def _address_allowed(address: _netguard.IPAddress, policy: FetchPolicy) -> bool:
    if policy.allow_private_urls and address.is_loopback:
        return True
    if any(address.version == net.version and address in net for net in policy.exempt_networks):
        return True
    return _netguard.blocked_reason(address) is None


def check_url(url: str, policy: FetchPolicy, *, deadline: float | None = None) -> Target:
    """Validate ``url`` against ``policy`` and resolve it to the addresses it may be fetched from.

    Raises BadRequestError (malformed URL, unsupported scheme, userinfo, a host name without a
    dot), BlockedUrlError (port or host not allowed, any address non-public, or a name that does
    not exist: the same answer), UpstreamError / UpstreamTimeoutError (DNS failure or timeout).
    Only the resolver is called; nothing is connected to.
    """
    clock = Deadline(time.monotonic() + policy.default_total_timeout if deadline is None else deadline)
    with _boundary(clock):
        return _check_url(url, policy, clock.at)


def _check_url(url: str, policy: FetchPolicy, deadline: float) -> Target:
    if not isinstance(url, str) or not url:
        raise BadRequestError("url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise BadRequestError(f"url must be at most {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_URL_CHARS.search(url):
        raise BadRequestError("url must not contain spaces, control characters or backslashes")
    if not url.isascii() and _LONE_SURROGATE.search(url):  # JSON's "\ud800": no URL can be made of it
        raise BadRequestError("url is not valid text (it has a lone UTF-16 surrogate)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise BadRequestError("url is not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadRequestError("url scheme must be http or https")
    if not parts.netloc:
        raise BadRequestError("URL has no host")
    if "@" in parts.netloc:
        raise BadRequestError("url must not contain a user name or password")

    raw_host, port_text, bracketed = _split_netloc(parts.netloc)
    if port_text:
        if not _PORT.match(port_text) or not 0 < int(port_text) < 65536:
            raise BadRequestError("URL port is not valid")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[scheme]
    host, literal = _normalise_host(raw_host, bracketed)

    if port not in policy.allowed_ports:
        raise BlockedUrlError(f"URL port {port} is not allowed")
    if policy.allowed_hosts and not _host_allowed(host, policy.allowed_hosts):
        raise BlockedUrlError("URL host is not in the list of allowed hosts")

    if literal is not None:
        if not _address_allowed(literal, policy):
            log.warning("blocked URL literal %s (%s)", host, _netguard.blocked_reason(literal))
            raise BlockedUrlError("URL host is a non-public address")
        addresses = [str(_netguard.connect_address(literal))]
    else:
        if not policy.allow_private_urls and (host == "localhost" or host.endswith(".localhost")):
            raise BlockedUrlError("URL host is a non-public address")
        if _single_label(host):
            raise BadRequestError("URL host must be a fully qualified domain name")
        addresses = []
        for info in _resolve(host, port, policy, deadline):
            sockaddr = info[4] if len(info) > 4 else None
            address = _netguard.parse_resolved(sockaddr[0]) if sockaddr else None
            if address is None or not _address_allowed(address, policy):
                log.warning(
                    "blocked URL host %s: resolves to %s (%s)",
                    host, sockaddr, address and _netguard.blocked_reason(address),
                )
                raise BlockedUrlError(NO_PUBLIC_ADDRESS)
            text = str(_netguard.connect_address(address))
            if text not in addresses:
                addresses.append(text)
        if not addresses:
            raise BlockedUrlError(NO_PUBLIC_ADDRESS)

    path = _NON_ASCII_OR_SPACE.sub(lambda m: quote(m.group(), safe=""), parts.path or "/")
    query = _NON_ASCII_OR_SPACE.sub(lambda m: quote(m.group(), safe=""), parts.query)
    request_target = path + ("?" + query if query else "")
    if not request_target.startswith("/"):
        request_target = "/" + request_target
    authority = f"[{host}]" if ":" in host else host
    host_header = authority if port == _DEFAULT_PORTS[scheme] else f"{authority}:{port}"
    return Target(
        url=f"{scheme}://{host_header}{request_target}",
        scheme=scheme,
        host=host,
        port=port,
        addresses=tuple(addresses),
        request_target=request_target,
        host_header=host_header,
        is_ip_literal=literal is not None,
    )


# --- HTTP over a pre-connected socket ------------------------------------------------------


class _Metered(io.RawIOBase):
    """The connection's bytes as http.client reads them (decrypted, for TLS), every one counted
    against ``limit``: status lines, headers, interim responses, chunk sizes with their extensions,
    trailers and the body alike (http.client drops all but the body unseen, so a count of body
    bytes alone let a server send gigabytes around a small image until the deadline)."""

    def __init__(self, raw: io.RawIOBase, limit: int, over: str) -> None:
        super().__init__()
        self._raw, self.limit, self.over, self.count = raw, limit, over, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        n = self._raw.readinto(buffer)
        if n:
            self.count += n
            if self.count > self.limit:
                raise UpstreamError(self.over)
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class _Response(http.client.HTTPResponse):
    """http.client's response, past every interim (1xx) response to the final one, read through a
    byte count (``_Metered``).

    RFC 9110 (15.2) has a client parse 1xx responses, expected or not, and servers send 103 Early
    Hints over HTTP/1.1 (Node's writeEarlyHints); http.client itself skips only 100 Continue and
    took a 103 for the answer (502). 101 stays final: asked for no upgrade, it is refused as a
    non-2xx status. At most ``MAX_INTERIM_RESPONSES`` (Go's net/http allows 5).

    Until the final response's headers are in, everything read counts against
    ``MAX_HEADER_BYTES``: http.client alone allows 100 header lines of 64 KiB per response, and
    ``email``, which parses them, spends seconds of CPU on a few MB of bare CRs, CPU the deadline
    cannot interrupt (up to 8 KiB of it may be body bytes read ahead). After them, what ``read1``
    has handed over as body plus ``MAX_FRAMING_BYTES`` for chunk sizes, their extensions and
    trailers (and one read's worth read ahead): tiny chunks cost a few us of Python each, so the
    allowance bounds that CPU too; the body itself is capped by ``Fetched`` (413). (What TLS
    itself sends, e.g. session tickets, is not counted: the deadline bounds it.)

    A header line that ``email`` cannot read (no colon, a space before it, a bare CR) ends the
    headers there and hides the rest; such a response is refused when a hidden line would change
    how the body is read (``Content-Length``, ``Transfer-Encoding``, ``Content-Encoding``), and
    served otherwise (servers do send ``Name : value``)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # http.client's reader, unused: its own makefile, released
        self._meter = _Metered(sock.makefile("rb", buffering=0), MAX_HEADER_BYTES,
                               f"upstream sent more than {MAX_HEADER_BYTES // 1024} KiB of response headers")
        self.fp = io.BufferedReader(self._meter)

    def begin(self) -> None:
        super().begin()
        if _HIDDEN_FRAMING.search(self.msg.get_payload() or ""):
            raise UpstreamError("upstream sent a malformed header line")
        self._meter.limit = self._meter.count + MAX_FRAMING_BYTES + _CHUNK
        self._meter.over = "upstream sent too much HTTP framing (chunk sizes and extensions, trailers) for its body"

    def read1(self, n: int = -1) -> bytes:  # how Fetched reads the body
        data = super().read1(n)
        self._meter.limit += len(data)
        return data

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(MAX_INTERIM_RESPONSES + 1):
            version, status, reason = super()._read_status()
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim response's headers, discarded
        raise UpstreamError(f"upstream sent more than {MAX_INTERIM_RESPONSES} interim (1xx) responses")


class _PinnedConnection(http.client.HTTPConnection):
    """An http.client connection over the socket we opened (and, for https, wrapped in TLS)
    to the validated address. It never opens a socket itself: a reconnect would bypass validation."""

    response_class = _Response

    def __init__(self, host: str, port: int, timeout: float, sock: socket.socket) -> None:
        super().__init__(host, port, timeout=timeout)
        self.sock = sock

    def connect(self) -> None:
        raise ConnectionError("pinned connection cannot reconnect")


def _open(target: Target, policy: FetchPolicy, clock: Deadline) -> socket.socket:
    """Connect to the first validated address that answers, trying a few of each family."""
    last_error: BaseException | None = None
    for address in _attempts(target.addresses):
        clock.check()
        timeout = min(policy.connect_timeout, max(clock.remaining(), 0.001))
        try:
            sock = policy.connector(address, target.port, timeout)
        except OSError as exc:
            last_error = exc
            continue
        clock.watch(sock)
        return sock
    assert last_error is not None
    try:
        raise last_error
    finally:
        last_error = None  # its traceback holds this frame (socket.create_connection does the same)


def _attempts(addresses: Sequence[str]) -> list[str]:
    """The first CONNECT_ATTEMPTS_PER_FAMILY addresses of each family, in the resolver's order: a DNS
    answer of thousands of addresses must not make one request dial them all."""
    tried: list[str] = []
    per_family = {False: 0, True: 0}  # IPv4, IPv6
    for address in addresses:
        family = ":" in address
        if per_family[family] < CONNECT_ATTEMPTS_PER_FAMILY:
            per_family[family] += 1
            tried.append(address)
    return tried


def _request(target: Target, policy: FetchPolicy, clock: Deadline) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    sock = _open(target, policy, clock)
    timeout = min(policy.read_timeout, max(clock.remaining(), 0.001))
    try:
        sock.settimeout(timeout)
        if target.scheme == "https":  # handshake now; certificate checked against the host name, also the SNI
            sock = policy.ssl_context().wrap_socket(sock, server_hostname=target.host)
        conn = _PinnedConnection(target.host, target.port, timeout, sock)
        conn.request(
            "GET",
            target.request_target,
            headers={
                "Host": target.host_header,
                "User-Agent": USER_AGENT,
                "Accept": "image/*, */*;q=0.5",
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
        )
        return conn, conn.getresponse()
    except BaseException:
        sock.close()  # the TLS socket once wrapped (a failed handshake closes its own)
        raise


def _declared_length(response: http.client.HTTPResponse) -> int | None:
    """The body's ``Content-Length``: None when the body is chunked or framed by the close (no
    length, or one that is not a number); differing lengths are refused (502)."""
    if response.chunked:  # HTTP/1.1: chunked wins over any Content-Length
        return None
    values = ",".join(response.headers.get_all("Content-Length") or ())
    try:
        lengths = {int(v.strip()) for v in values.split(",")} if values else set()
    except ValueError:
        return None
    if len(lengths) > 1:
        raise UpstreamError("upstream sent conflicting Content-Length headers")
    length = lengths.pop() if lengths else None
    return length if length is not None and length >= 0 else None


def _check_body_headers(response: http.client.HTTPResponse, cap: int) -> int | None:
    """Refuse, before any body byte is read, a declared length over ``cap`` and compressed bodies;
    return the declared length."""
    declared = _declared_length(response)
    if declared is not None and declared > cap:
        raise PayloadTooLargeError(f"the image at the URL is larger than the {cap}-byte limit")
    encodings = ",".join(response.headers.get_all("Content-Encoding") or ())  # every header, as for the length
    if any(coding.strip().lower() not in ("", "identity") for coding in encodings.split(",")):
        raise UpstreamError("upstream sent a compressed body although identity encoding was requested")
    return declared


def _fetch(url: str, policy: FetchPolicy, clock: Deadline) -> "Fetched":
    target = _check_url(url, policy, clock.at)
    redirects = 0
    while True:
        conn, response = _request(target, policy, clock)
        try:
            status = response.status
            if status not in _REDIRECT_STATUSES:
                if not 200 <= status < 300:
                    raise UpstreamError(f"upstream answered HTTP {status}")
                declared = _check_body_headers(response, policy.max_download_bytes)
                return Fetched(conn, response, clock, policy.max_download_bytes, declared)
            location = response.headers.get("Location")
            if not location:
                raise UpstreamError(f"upstream answered HTTP {status} without a Location")
            if redirects >= policy.max_redirects:
                raise UpstreamError(f"too many redirects (the limit is {policy.max_redirects})")
            redirects += 1
            try:
                previous, target = target, _check_url(urljoin(target.url, location.strip()), policy, clock.at)
            except ValueError as exc:  # urljoin: "Invalid IPv6 URL" and the like
                raise UpstreamError("upstream redirected to an unusable URL") from exc
            except BadRequestError as exc:
                raise UpstreamError(f"upstream redirected to an unusable URL: {exc.message}") from exc
            except BlockedUrlError as exc:
                raise BlockedUrlError(f"redirect refused: {exc.message}") from exc
            if previous.scheme == "https" and target.scheme == "http":  # anyone on the path could swap the image
                raise UpstreamError("upstream redirected from https to plain http")
        except BaseException:
            response.close()
            conn.close()
            raise
        response.close()  # the redirect's body is never read
        conn.close()
        clock.unwatch()  # its duplicate too: else the connection stays open until the fetch ends


class Fetched(io.BufferedIOBase):
    """The body of a fetched URL: a read-only, seekable binary file that downloads on demand.

    ``read(n)`` returns ``n`` bytes unless the body ends first, like a file. Bytes are pulled
    from the connection only when a read (or a read after a ``seek`` past them) needs them:
    each pull takes what has already arrived, up to 64 KiB, and waits only if nothing has.
    They are kept, so seeking back costs nothing. Every pull is checked as the whole-body
    read was: the bytes received so far against ``max_download_bytes`` (413), the absolute
    deadline and its watchdog (504), a body shorter than its ``Content-Length`` or a reset
    connection (502). Only ``classifier.errors`` types are raised; after one, the body stays
    failed and every later read raises it again.

    ``close()`` (or leaving a ``with`` block) closes the connection and stops the watchdog;
    bytes not asked for by then are never downloaded. The connection is also released as
    soon as the body ends. ``received`` counts the bytes that have arrived, ``waited`` the
    seconds reads spent pulling from the network, ``content_type`` is the upstream's raw
    ``Content-Type`` (or None).
    """

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, clock: Deadline,
                 cap: int, declared: int | None = None) -> None:
        super().__init__()
        self.content_type: str | None = response.headers.get("Content-Type")
        self.waited = 0.0
        self._conn: http.client.HTTPConnection | None = conn
        self._response: http.client.HTTPResponse | None = response
        self._clock, self._cap, self._declared = clock, cap, declared
        self._data = io.BytesIO()  # everything received so far; its position is the reader's
        self._received = 0
        self._readable = 0  # what reads may take without pulling: received, or -1 once failed
        self._complete = False
        self._failure: ClassifierError | None = None

    @property
    def received(self) -> int:
        return self._received

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if not self._complete:
            wanted = None if size is None or size < 0 else self._data.tell() + size
            if wanted is None or wanted > self._readable:
                self._fill(wanted)
        return self._data.read(size)

    read1 = read

    def readinto(self, buffer: Any) -> int:
        if not self._complete:
            self._fill(self._data.tell() + memoryview(buffer).nbytes)
        return self._data.readinto(buffer)

    readinto1 = readinto

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END and not self._complete:
            self._fill(None)
        return self._data.seek(offset, whence)  # past what has arrived: the next read pulls up to there

    def tell(self) -> int:
        return self._data.tell()

    def close(self) -> None:
        self._release()
        self._data.close()
        # A failed read's error holds its traceback, whose frames hold this body and the decoder's
        # half-decoded image: a cycle only the garbage collector would free, many requests later
        # (a 16 MP image each time: ~50 MB per failed request, an out-of-memory kill after ~8).
        self._failure = None
        super().close()

    def __repr__(self) -> str:
        return f"Fetched(<{self.received} bytes received>, content_type={self.content_type!r})"

    def _fill(self, wanted: int | None) -> None:
        """Pull until ``wanted`` bytes have arrived (None: all of them) or the body has ended."""
        if self._failure is not None:
            raise self._failure
        while self._response is not None and (wanted is None or self._received < wanted):
            self._pull()

    def _pull(self) -> None:
        """Take what has arrived, up to 64 KiB (waiting only if nothing has): one socket read at most."""
        started = time.perf_counter()
        try:
            with _boundary(self._clock):
                self._clock.check()
                left = _CHUNK if self._declared is None else min(_CHUNK, self._declared - self._received)
                chunk = self._response.read1(left) if left > 0 else b""  # never past the Content-Length
                if not chunk:
                    self._clock.check()
                    if self._declared is not None and self._received < self._declared:
                        raise UpstreamError("upstream sent an invalid or incomplete HTTP response")
                    self._complete = True
                    self._release()
                    # From now on the decoder reads the buffer directly: no Python call per read
                    # (some parsers read a byte at a time, e.g. GIF between blocks).
                    self.read = self.read1 = self._data.read  # type: ignore[method-assign]
                    self.readinto = self.readinto1 = self._data.readinto  # type: ignore[method-assign]
                    return
                self._received = self._readable = self._received + len(chunk)
                if self._received > self._cap:
                    raise PayloadTooLargeError(f"the image at the URL is larger than the {self._cap}-byte limit")
                position = self._data.tell()
                self._data.seek(self._received - len(chunk))
                self._data.write(chunk)
                self._data.seek(position)
        except ClassifierError as error:
            self._failure, self._readable = error, -1
            self._release()
            raise
        finally:
            self.waited += time.perf_counter() - started

    def _release(self) -> None:
        response, conn, self._response, self._conn = self._response, self._conn, None, None
        if response is not None:
            response.close()
        if conn is not None:
            conn.close()
        self._clock.close()


@contextlib.contextmanager
def _boundary(clock: Deadline) -> Iterator[None]:
    """The one boundary where library and OS exceptions become caller-facing errors: around
    everything ``fetch_url`` does and around every pull of a ``Fetched`` body."""
    try:
        yield
    except ClassifierError as exc:
        if clock.fired and not isinstance(exc, (BlockedUrlError, BadRequestError, PayloadTooLargeError)):
            raise UpstreamTimeoutError(
                "fetching the URL took longer than the time left for this request"
            ) from exc
        raise
    except Exception as exc:
        raise _translate(exc, clock) from exc


def _translate(exc: BaseException, clock: Deadline) -> ClassifierError:
    """The one place where library and OS exceptions become caller-facing errors."""
    if clock.expired():
        return UpstreamTimeoutError("fetching the URL took longer than the time left for this request")
    if isinstance(exc, socket.gaierror):
        return UpstreamError("could not resolve the upstream host")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError("upstream server timed out")
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return UpstreamError("TLS connection to upstream failed (certificate or handshake)")
    if isinstance(exc, ConnectionRefusedError):
        return UpstreamError("upstream refused the connection")
    if isinstance(exc, http.client.HTTPException):
        return UpstreamError("upstream sent an invalid or incomplete HTTP response")
    if isinstance(exc, OSError):
        return UpstreamError("could not connect to upstream")
    return InternalError()


def fetch_url(url: str, policy: FetchPolicy, deadline: float | None = None) -> Fetched:
    """Open ``url`` under ``policy`` before ``deadline`` (absolute ``time.monotonic()``).

    Returns once the final response's headers are in, with its body as ``Fetched``: a file
    that downloads as it is read, under the same cap and deadline. Close it (``with
    fetch_url(...) as body:``). Raises, here or from the body's reads, only
    ``classifier.errors`` types: BadRequestError 400, BlockedUrlError 403,
    PayloadTooLargeError 413, UpstreamError 502, UpstreamTimeoutError 504, InternalError 500.
    """
    if deadline is None:
        deadline = time.monotonic() + policy.default_total_timeout
    clock = Deadline(deadline)
    try:
        with _boundary(clock):
            clock.check()
            return _fetch(url, policy, clock)
    except BaseException:
        clock.close()
        raise
