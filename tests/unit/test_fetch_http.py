"""classifier.fetch at the edges of HTTP: interim (1xx) responses, bytes around the body (headers,
chunk framing, trailers), repeated Content-Encoding headers, a redirect hop's socket, proxy variables.

Same rule as test_fetch.py: nothing connects anywhere but loopback (the autouse fixture in
conftest.py refuses it), blocked addresses only ever reach the fake resolver.
"""

from __future__ import annotations

import ipaddress
import threading
import time

import pytest

from classifier import errors
from classifier.fetch import FetchPolicy, fetch_url

from fetch_fixtures.helpers import FakeResolver, LoopbackOnlyConnector, Outcome, image, send, trickle

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
EXEMPT_LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


def _policy_for(server, **kwargs) -> FetchPolicy:
    return FetchPolicy(resolver=FakeResolver(), connector=LoopbackOnlyConnector(),
                       allowed_ports=(server.port,), exempt_networks=EXEMPT_LOOPBACK, **kwargs)


def _fetch_all(url, policy, seconds=5.0) -> bytes:
    with fetch_url(url, policy, deadline=time.monotonic() + seconds) as body:
        return body.read()


def _raw(data: bytes, linger: float = 0.0):
    def route(conn, request):
        conn.sendall(data)
        time.sleep(linger)
    return route


FINAL = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(PNG) + PNG


# --- interim (1xx) responses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n",
    ],
    ids=["103", "102", "100-103-103"],
)
def test_interim_responses_before_the_final_one_are_skipped(server_factory, interim):
    # RFC 9110 15.2: a client MUST parse any number of 1xx responses before the final one, even
    # unexpected ones (Node's writeEarlyHints sends 103 over HTTP/1.1 to every client).
    server = server_factory({"/cat.png": _raw(interim + FINAL)})
    assert _fetch_all(server.url("/cat.png"), _policy_for(server)) == PNG


def test_an_unrequested_protocol_switch_is_a_bad_gateway(server_factory):
    server = server_factory({"/x": _raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + FINAL)})
    with pytest.raises(errors.UpstreamError, match="101"):
        _fetch_all(server.url("/x"), _policy_for(server))


def test_interim_responses_without_a_final_one_are_a_bad_gateway(server_factory):
    server = server_factory({"/x": _raw(b"HTTP/1.1 103 Early Hints\r\n\r\n")})
    with pytest.raises(errors.UpstreamError) as info:
        _fetch_all(server.url("/x"), _policy_for(server))
    assert info.value.status == 502


def test_endless_interim_responses_are_refused_after_five(server_factory):
    # Go's net/http allows 5 too: each costs a header parse, and tiny 103s are cheap to send.
    outcome = Outcome()

    def endless(conn, request):
        started = time.monotonic()
        try:
            while time.monotonic() - started < 5:
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                time.sleep(0.01)
        except OSError:
            return outcome.end("client closed")
        outcome.end("gave up")

    server = server_factory({"/x": endless})
    with pytest.raises(errors.UpstreamError, match="more than 5 interim"):
        _fetch_all(server.url("/x"), _policy_for(server, read_timeout=5))
    assert outcome.wait() == "client closed"  # the fetcher hung up, not the server (after 5 s)


def test_five_interim_responses_are_still_skipped(server_factory):
    server = server_factory({"/cat.png": _raw(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" * 5 + FINAL)})
    assert _fetch_all(server.url("/cat.png"), _policy_for(server)) == PNG


# --- bytes around the body: headers, chunk framing, trailers -------------------------------------


def _flood(head: bytes, unit: bytes, units: int, tail: bytes, outcome: Outcome):
    """Send ``head``, ``units`` times ``unit`` (~tens of MB), then ``tail``; tell whether the client hung up."""
    def route(conn, request):
        try:
            conn.sendall(head)
            for _ in range(units):
                conn.sendall(unit)
            conn.sendall(tail)
        except OSError:
            return outcome.end("client closed")
        outcome.end("sent all")
    return route


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
EXTENSION = b";x=" + b"a" * 60_000  # http.client reads and drops chunk extensions unseen


@pytest.mark.parametrize("head, unit, units, tail", [
    # 1-byte chunks, each with a 60 KB extension: 108 bytes of body in 60 MB of framing
    (CHUNKED_HEAD + b"%x\r\n%s\r\n" % (len(PNG), PNG), b"1" + EXTENSION + b"\r\nx\r\n", 1000, b"0\r\n\r\n"),
    # a whole body, then endless trailer lines after its last chunk
    (CHUNKED_HEAD + b"%x\r\n%s\r\n0\r\n" % (len(PNG), PNG), b"X-Trailer: " + b"a" * 60_000 + b"\r\n", 1000, b"\r\n"),
    # plain 1-byte chunks: 5 bytes of framing and a few us of Python each, 1 MB of body well under the cap
    (CHUNKED_HEAD + b"%x\r\n%s\r\n" % (len(PNG), PNG), b"1\r\nx\r\n", 1_000_000, b"0\r\n\r\n"),
], ids=["chunk-extensions", "trailers", "1-byte-chunks"])
def test_framing_around_the_body_is_bounded_whatever_the_cap(server_factory, head, unit, units, tail):
    # Before, only body bytes were counted: these responses were read to their end and accepted.
    outcome = Outcome()
    server = server_factory({"/x": _flood(head, unit, tail=tail, units=units, outcome=outcome)})
    with pytest.raises(errors.UpstreamError, match="framing"):
        _fetch_all(server.url("/x"), _policy_for(server))  # the default 15 MB cap
    assert outcome.wait() == "client closed"


def test_ordinary_chunked_framing_fits_the_allowance(server_factory):
    # A body at the cap, in 1 KiB chunks (~0.6 % framing), with a trailer: accepted whole.
    body = PNG + bytes(range(256)) * 3900
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1024]), body[i:i + 1024]) for i in range(0, len(body), 1024))
    server = server_factory({"/x": _raw(CHUNKED_HEAD + chunks + b"0\r\nX-Checksum: 1\r\n\r\n")})
    assert _fetch_all(server.url("/x"), _policy_for(server, max_download_bytes=len(body))) == body


INTERIM_30KB = b"HTTP/1.1 103 Early Hints\r\nLink: </" + b"a" * 30_000 + b">\r\n\r\n"


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\n" + (b"X-Pad: " + b"a" * 1000 + b"\r\n") * 80 + b"\r\n" + PNG,
    # bare CRs: email's parser takes each for a line (~2 s of CPU for 6 MB)
    b"HTTP/1.1 200 OK\r\n" + (b"X-Pad: " + b"a\r" * 500 + b"\r\n") * 80 + b"\r\n" + PNG,
    INTERIM_30KB * 3 + FINAL,  # interim responses count towards the same 64 KiB
], ids=["long", "bare-CR", "interim"])
def test_more_than_64_kib_of_headers_is_refused(server_factory, response):
    # http.client alone allows 100 lines of 64 KiB per response; the CPU they cost to parse no deadline interrupts.
    server = server_factory({"/x": _raw(response)})
    with pytest.raises(errors.UpstreamError, match="64 KiB of response headers"):
        _fetch_all(server.url("/x"), _policy_for(server))


def test_large_but_ordinary_headers_are_accepted(server_factory):
    cookies = b"".join(b"Set-Cookie: c%d=%s\r\n" % (i, b"v" * 1000) for i in range(40))  # 40 KB
    server = server_factory({"/x": _raw(FINAL.replace(b"\r\n\r\n", b"\r\n" + cookies + b"\r\n", 1))})
    assert _fetch_all(server.url("/x"), _policy_for(server)) == PNG


# --- Content-Encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers, refusal", [
    (b"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n", "compressed"),
    (b"Content-Encoding: \r\nContent-Encoding: br\r\n", "compressed"),
    # email stops reading headers at a line it cannot parse, so the Content-Encoding after it went unseen
    (b"X-No-Colon-Here\r\nContent-Encoding: gzip\r\n", "malformed header line"),
    (b"Content-Encoding : gzip\r\n", "malformed header line"),
    (b"\r\r\nContent-Encoding: gzip\r\n", "malformed header line"),  # a bare CR: a blank line to email
    (b"\rContent-Encoding: gzip\r\n", "malformed header line"),
], ids=["identity-then-gzip", "empty-then-br", "hidden-by-a-line-without-colon", "space-before-colon",
        "hidden-by-a-bare-cr-line", "behind-a-bare-cr"])
def test_a_compressed_body_is_refused_whichever_content_encoding_header_says_so(server_factory, headers, refusal):
    # Nothing decompresses a body; a second Content-Encoding header, or one hidden from the header
    # parser, must not slip a compressed one past the check to the decoder (which would answer 415
    # instead of this 502).
    body = b"\x1f\x8b\x08\x00" + b"\x00" * 20
    server = server_factory({"/gz": _raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n" + headers
                                         + b"Content-Length: %d\r\n\r\n" % len(body) + body)})
    with pytest.raises(errors.UpstreamError, match=refusal):
        _fetch_all(server.url("/gz"), _policy_for(server))


def test_a_malformed_header_line_that_hides_nothing_that_matters_is_served(server_factory):
    # Servers do send "Name : value" (urllib3 issue #1433); email stops reading there, but what it hides
    # does not change how the body is read.
    server = server_factory({"/x": _raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n"
                                        b"Access-Control-Expose-Headers : X-Id\r\nX-Id: 7\r\n\r\n" % len(PNG) + PNG)})
    assert _fetch_all(server.url("/x"), _policy_for(server)) == PNG


@pytest.mark.parametrize("value", ["identity", "IDENTITY", "", " identity "])
def test_identity_content_encoding_is_accepted(server_factory, value):
    server = server_factory({"/x": lambda conn, req: send(conn, 200, PNG, headers={"Content-Encoding": value})})
    assert _fetch_all(server.url("/x"), _policy_for(server)) == PNG


# --- proxies ---------------------------------------------------------------------------------------


def test_proxy_environment_variables_are_not_honoured(server_factory, monkeypatch):
    # A proxy would do its own name resolution and connect wherever it likes: the fetch must dial
    # the validated address itself, whatever the environment says.
    proxy = server_factory({})
    origin = server_factory({"/cat.png": image(PNG)})
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    resolver = FakeResolver({"img.example.com": ["127.0.0.1"]})
    connector = LoopbackOnlyConnector()
    policy = FetchPolicy(resolver=resolver, connector=connector, allowed_ports=(origin.port, proxy.port),
                         exempt_networks=EXEMPT_LOOPBACK)
    assert _fetch_all(f"http://img.example.com:{origin.port}/cat.png", policy) == PNG
    assert connector.attempts == [("127.0.0.1", origin.port)]
    assert proxy.requests == [] and [r.path for r in origin.requests] == ["/cat.png"]


# --- redirects ---------------------------------------------------------------------------------------


def test_a_redirect_hop_connection_is_closed_before_the_next_hop_is_read(server_factory):
    # The deadline watches a dup() of each socket; closing the hop's connection must also drop
    # that duplicate, or the kernel socket (and the upstream's connection) stays open until the
    # whole fetch ends, however long the final body takes.
    hop_closed = threading.Event()
    closed_in_time = []

    def hop(conn, request):
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /cat.png\r\nContent-Length: 0\r\n\r\n")
        conn.settimeout(3)
        try:
            if conn.recv(1) == b"":
                hop_closed.set()
        except OSError:
            pass

    def final(conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(PNG)
                     + PNG[:10])
        closed_in_time.append(hop_closed.wait(2))  # the rest of the body once the first hop is closed (or 2 s)
        conn.sendall(PNG[10:])

    server = server_factory({"/r": hop, "/cat.png": final})
    assert _fetch_all(server.url("/r"), _policy_for(server)) == PNG
    assert closed_in_time == [True]


def test_the_deadline_still_cuts_a_trickling_body_after_a_redirect(server_factory):
    slow = trickle(0.05, 10_000)
    server = server_factory({"/r": _raw(b"HTTP/1.1 302 Found\r\nLocation: /slow\r\nContent-Length: 0\r\n\r\n"),
                             "/slow": slow})
    with pytest.raises(errors.UpstreamTimeoutError):
        _fetch_all(server.url("/r"), _policy_for(server, read_timeout=5), seconds=0.8)
    assert slow.outcome.wait() == "client closed"  # the fetcher hung up, not the server (after 5 s)
