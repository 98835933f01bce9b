"""classifier.fetch: the SSRF-safe image fetcher.

Rule of these tests: nothing ever connects to a non-loopback address. Blocked addresses are
exercised through the injected resolver and a connector that records attempts and refuses
anything but loopback; real HTTP(S) is served by servers these tests start on 127.0.0.1.
An autouse fixture in ``conftest.py`` (``refuse_non_loopback``) additionally makes ``socket.connect`` and
``socket.getaddrinfo`` refuse anything non-loopback, so a bug in the fetcher fails a test
instead of sending traffic.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time

import pytest

from classifier import errors, fetch
from classifier.fetch import FetchPolicy, Fetched, Target, check_url, fetch_url
from classifier.settings import Settings

from fetch_fixtures.helpers import (
    FakeResolver,
    ForbiddenConnect,
    Outcome,
    LoopbackOnlyConnector,
    image,
    make_tls_material,
    redirect,
    send,
    trickle,
)

PUBLIC_V4 = "93.184.215.14"  # a public address; only ever handed to the fake resolver
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
EXEMPT_LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


# --- safety net -----------------------------------------------------------------------------


def make_policy(resolver=None, connector=None, **kwargs) -> FetchPolicy:
    """A policy that can only ever use the fake resolver and the loopback-only connector."""
    kwargs.setdefault("allowed_ports", (80, 443))
    return FetchPolicy(
        resolver=resolver if resolver is not None else FakeResolver(),
        connector=connector if connector is not None else LoopbackOnlyConnector(),
        **kwargs,
    )


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def fetch_all(url, policy, deadline=None) -> bytes:
    """The whole body, as the fetcher delivered it before streaming: open, read to the end, close."""
    with fetch_url(url, policy, deadline=deadline) as body:
        return body.read()


# --- API shape --------------------------------------------------------------------------------


def test_policy_from_settings_maps_every_field():
    settings = Settings(
        model_path="m.onnx", allow_private_urls=True, allowed_hosts=("a.example", "*.b.example"),
        allowed_ports=(443, 8443), max_download_bytes=1234, fetch_connect_timeout=1.5,
        fetch_read_timeout=2.5, max_redirects=2,
    )
    policy = FetchPolicy.from_settings(settings)
    assert policy.allow_private_urls is True
    assert policy.allowed_hosts == ("a.example", "*.b.example")
    assert policy.allowed_ports == (443, 8443)
    assert (policy.max_download_bytes, policy.connect_timeout, policy.read_timeout, policy.max_redirects) == (
        1234, 1.5, 2.5, 2)
    # the real resolver by default: socket.getaddrinfo looked up at each call, so the autouse guard applies
    assert policy.resolver is fetch._system_resolver
    with pytest.raises(ForbiddenConnect, match="real DNS lookup"):
        policy.resolver("example.com", 443, 0, socket.SOCK_STREAM)


def test_default_policy_is_closed():
    policy = FetchPolicy.from_settings(Settings(model_path="m.onnx"))
    assert policy.allow_private_urls is False
    assert policy.allowed_ports == (80, 443)
    assert policy.exempt_networks == ()
    assert policy.max_redirects == 3


def test_fetch_returns_a_streaming_body_with_content_type(server_factory):
    server = server_factory({"/cat.png": image(PNG, "image/png")})
    resolver = FakeResolver({"img.example.com": ["127.0.0.1"]})
    policy = make_policy(resolver, allowed_ports=(server.port,), exempt_networks=EXEMPT_LOOPBACK)
    with fetch_url(f"http://img.example.com:{server.port}/cat.png", policy, deadline=soon()) as body:
        assert isinstance(body, Fetched) and body.readable() and body.seekable()
        assert body.content_type == "image/png"
        assert body.received == 0  # headers only so far
        assert body.read(8) == PNG[:8] and body.tell() == 8
        assert body.seek(50) == 50 and body.read(10) == PNG[50:60]
        assert body.seek(-4, 2) == len(PNG) - 4 and body.read() == PNG[-4:]
        assert body.read(5) == b"" and body.seek(0) == 0
        assert body.read() == PNG and body.received == len(PNG)
        into = bytearray(12)
        body.seek(2)
        assert body.readinto(into) == 12 and bytes(into) == PNG[2:14]
        assert "bytes" in repr(body) and len(repr(body)) < 100
    assert body.closed
    with pytest.raises(ValueError):
        body.read(1)
    (request,) = server.requests
    assert request.headers["host"] == f"img.example.com:{server.port}"
    assert request.headers["accept-encoding"] == "identity"
    assert request.method == "GET" and request.path == "/cat.png"


# --- URL syntax: 400 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/cat.png",
        "gopher://example.com/",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//example.com/cat.png",
        "example.com/cat.png",
        "http:///cat.png",
        "http://",
        "http:example.com/cat.png",
        "http://user@example.com/",
        "http://user:pass@example.com/",
        "http://@example.com/",
        "http://example.com@127.0.0.1/",
        "http://127.0.0.1\\@example.com/",
        "http://example.com\\cat.png",
        "http://exa mple.com/",
        "http://example.com/ cat.png",
        "http://example.com/\ncat.png",
        "http://example.com/\tcat.png",
        " http://example.com/",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://example.com:-1/",
        "http://example.com:8o/",
        "http://example.com:+80/",
        "http://[::1/",
        "http://[fe80::1%25eth0]/",
        "http://[127.0.0.1]/",
        "http://[::1]x/",
        "http://1.2.3.4.5/",
        "http://256.0.0.1/",
        "http://1.2.3.0400/",
        "http://08.0.0.1/",
        "http://0x1g.0.0.1.5/",
        "http://127.0.0.1../",
        "http://exa_mple..com/",
        "http://%zz.example.com/",
        "http://%ff.example.com/",
        "http://%2531%2532%2537.0.0.1/",
        "http://ex%40ample.com/",
        "http://" + "a" * 64 + ".example.com/",
        "http://example.com/" + "a" * 5000,
        "",
    ],
)
def test_malformed_urls_are_bad_requests(url):
    resolver, connector = FakeResolver(), LoopbackOnlyConnector()
    with pytest.raises(errors.BadRequestError):
        fetch_all(url, make_policy(resolver, connector), deadline=soon())
    assert resolver.calls == [] and connector.attempts == []


def test_non_string_url_is_a_bad_request():
    with pytest.raises(errors.BadRequestError):
        fetch_all(None, make_policy(), deadline=soon())  # type: ignore[arg-type]


# --- blocked addresses: 403, nothing resolved or connected ----------------------------------------

BLOCKED_LITERAL_HOSTS = [
    # IPv4, plain
    "0.0.0.0", "0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "127.0.0.1", "127.255.255.254", "169.254.169.254", "169.254.170.2", "169.254.169.253",
    "169.254.169.123", "172.16.0.1", "172.31.255.255", "192.0.0.1", "192.0.0.170", "192.0.2.10",
    "192.88.99.1", "192.168.0.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    # IPv4, the spellings inet_aton (and so getaddrinfo) accepts
    "2130706433", "0x7f000001", "0X7F000001", "017700000001", "0x7f.1", "0177.1", "0177.0.0.1",
    "0177.0.1", "127.1", "127.0.1", "0x7f.0x0.0x0.0x1", "0x7F.0.0.01", "00000177.0.0.1",
    "0xA9FEA9FE", "2852039166", "0251.0376.0251.0376", "169.254.43518", "0xa9.0xfe.0xa9.0xfe",
    "169.16689662", "0xa9.0xfeaa02", "0x0", "0x", "0x.0x.0x.0x", "3232235777", "0300.0250.1.1",
    # trailing dot, percent-encoding, IDNA (full-width digits, ideographic dots), case
    "127.0.0.1.", "2130706433.", "%31%32%37.0.0.1", "%31%36%39.254.169.254", "%30x7f.1",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127\u30020\u30020\u30021", "127\uff0e0\uff0e0\uff0e1",
    "169\uff61254\uff61169\uff61254", "0X7F.1",
    # names that are loopback by definition (RFC 6761), never sent to DNS
    "localhost", "LOCALHOST", "localhost.", "api.localhost", "%6c%6f%63%61%6c%68%6f%73%74",
    # IPv6
    "[::1]", "[::]", "[0:0:0:0:0:0:0:1]", "[0000::0001]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
    "[::FFFF:127.0.0.1]", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[::ffff:10.0.0.1]",
    "[::ffff:0.0.0.0]", "[::127.0.0.1]", "[::8.8.8.8]", "[::ffff:0:127.0.0.1]",
    "[64:ff9b::127.0.0.1]", "[64:ff9b::a9fe:a9fe]", "[64:ff9b::10.1.2.3]", "[64:ff9b:1::1.2.3.4]",
    "[2002:7f00:1::]", "[2002:a9fe:a9fe::1]", "[2002:c0a8:101::1]", "[2001::1]", "[2001:0:4136:e378::1]",
    "[2001:db8::1]", "[3fff::1]", "[100::1]", "[fc00::1]", "[fd00:ec2::254]", "[fdff:ffff::1]",
    "[fe80::1]", "[febf::1]", "[fec0::1]", "[ff02::1]", "[ff05::1:3]", "[5f00::1]", "[4000::1]",
]


@pytest.mark.parametrize("host", BLOCKED_LITERAL_HOSTS)
def test_blocked_address_literals_never_resolve_or_connect(host):
    resolver, connector = FakeResolver(), LoopbackOnlyConnector()
    with pytest.raises(errors.BlockedUrlError) as info:
        fetch_all(f"http://{host}/latest/meta-data/", make_policy(resolver, connector), deadline=soon())
    assert info.value.status == 403 and info.value.code == "blocked_url"
    assert resolver.calls == []
    assert connector.attempts == []


@pytest.mark.parametrize("scheme", ["http", "https", "HTTP", "HtTpS"])
def test_metadata_service_blocked_for_every_scheme(scheme):
    connector = LoopbackOnlyConnector()
    with pytest.raises(errors.BlockedUrlError):
        fetch_all(f"{scheme}://169.254.169.254/latest/meta-data/iam/", make_policy(connector=connector))
    assert connector.attempts == []


@pytest.mark.parametrize(
    "answer",
    [
        ["169.254.169.254"], ["169.254.170.2"], ["127.0.0.1"], ["10.1.2.3"], ["100.100.100.100"],
        ["0.0.0.0"], ["::1"], ["::"], ["::ffff:169.254.169.254"], ["fd00:ec2::254"], ["fe80::1%eth0"],
        ["fe80::1"], ["64:ff9b::a00:1"], ["2002:a00:1::1"], ["224.0.0.251"],
        # one bad address among good ones: the whole name is refused
        [PUBLIC_V4, "10.0.0.1"], ["127.0.0.1", PUBLIC_V4], [PUBLIC_V6, "::1"], [PUBLIC_V4, PUBLIC_V6, "fc00::1"],
        # garbage from a resolver fails closed
        ["not-an-address"],
    ],
)
def test_names_resolving_to_blocked_addresses_are_refused_without_connecting(answer):
    resolver = FakeResolver({"evil.example": answer})
    connector = LoopbackOnlyConnector()
    with pytest.raises(errors.BlockedUrlError) as info:
        fetch_all("http://evil.example/cat.png", make_policy(resolver, connector), deadline=soon())
    assert resolver.hosts == ["evil.example"]
    assert connector.attempts == []
    # the caller never learns which internal address the name points at
    for address in answer:
        assert address.split("%")[0] not in info.value.message
    assert info.value.message == "URL host does not resolve to a public address"


def test_resolver_sees_normalised_host():
    resolver = FakeResolver({"xn--bcher-kva.example": [PUBLIC_V4], "img.example.com": [PUBLIC_V4]})
    target = check_url("http://B\u00fccher.Example./a", make_policy(resolver))
    assert target.host == "xn--bcher-kva.example" and target.addresses == (PUBLIC_V4,)
    target = check_url("http://%69mg.EXAMPLE.com/x", make_policy(resolver))
    assert target.host == "img.example.com"
    assert resolver.hosts == ["xn--bcher-kva.example", "img.example.com"]


def test_public_addresses_are_accepted_and_kept_exactly():
    resolver = FakeResolver({"img.example.com": [PUBLIC_V4, PUBLIC_V6, PUBLIC_V4]})
    target = check_url("https://img.example.com/a/b.png?x=1#frag", make_policy(resolver))
    assert isinstance(target, Target)
    assert target.addresses == (PUBLIC_V4, PUBLIC_V6)
    assert (target.scheme, target.host, target.port) == ("https", "img.example.com", 443)
    assert target.request_target == "/a/b.png?x=1"
    assert target.host_header == "img.example.com"
    mapped = check_url("http://[::ffff:93.184.215.14]/", make_policy())
    assert mapped.addresses == (PUBLIC_V4,)  # an IPv4-mapped address is dialled as IPv4
    numeric = check_url("http://1572394766/", make_policy())  # 93.184.215.14 spelled as one number
    assert numeric.addresses == (PUBLIC_V4,) and numeric.is_ip_literal


def test_non_ascii_path_is_percent_encoded():
    target = check_url("http://93.184.215.14/k\u00e4tze/\u732b.png?q=\u00e9", make_policy())
    assert target.request_target == "/k%C3%A4tze/%E7%8C%AB.png?q=%C3%A9"


# --- ports and host allow-list --------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://img.example.com:8080/", "https://img.example.com:22/",
                                 "http://img.example.com:443/x", "http://img.example.com:6379/"])
def test_ports_outside_the_allow_list_are_blocked(url):
    resolver = FakeResolver({"img.example.com": [PUBLIC_V4]})
    policy = make_policy(resolver, allowed_ports=(80, 443) if ":443/" not in url else (80,))
    with pytest.raises(errors.BlockedUrlError):
        check_url(url, policy)
    assert resolver.calls == []


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("images.example.com", True), ("IMAGES.example.com.", True), ("a.cdn.example.net", True),
        ("x.y.cdn.example.net", True), ("cdn.example.net", False), ("evilcdn.example.net", False),
        ("images.example.com.evil.org", False), ("evil.org", False), ("example.com", False),
        ("93.184.215.14", False),
    ],
)
def test_host_allow_list(host, allowed):
    resolver = FakeResolver({h: [PUBLIC_V4] for h in ("images.example.com", "a.cdn.example.net",
                                                         "x.y.cdn.example.net")})
    policy = make_policy(resolver, allowed_hosts=("images.example.com", "*.cdn.example.net"))
    if allowed:
        assert check_url(f"https://{host}/cat.png", policy).addresses == (PUBLIC_V4,)
    else:
        with pytest.raises(errors.BlockedUrlError):
            check_url(f"https://{host}/cat.png", policy)
        assert resolver.calls == []


def test_allow_list_does_not_override_the_address_check():
    resolver = FakeResolver({"images.example.com": ["169.254.169.254"]})
    policy = make_policy(resolver, allowed_hosts=("images.example.com",))
    with pytest.raises(errors.BlockedUrlError):
        check_url("http://images.example.com/", policy)


# --- DNS failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [None, [], ["10.1.2.3"]])  # no such name, no address, a private one
def test_a_name_that_does_not_exist_looks_like_a_private_one(answer):
    # Else a caller could probe which names a private DNS zone holds (a function in a VPC).
    resolver = FakeResolver({} if answer is None else {"db.corp.example": answer})
    with pytest.raises(errors.BlockedUrlError) as info:
        fetch_all("http://db.corp.example/", make_policy(resolver), deadline=soon())
    assert info.value.message == "URL host does not resolve to a public address"


@pytest.mark.parametrize("answer", [None, ["10.1.2.3"]])
def test_a_redirect_to_a_name_that_does_not_exist_looks_like_one_to_a_private_name(server_factory, answer):
    server = server_factory({"/r": redirect("http://db.corp.example/")})
    resolver = FakeResolver({} if answer is None else {"db.corp.example": answer})
    policy = _policy_for(server, resolver=resolver)
    with pytest.raises(errors.BlockedUrlError) as info:
        fetch_all(server.url("/r"), policy, deadline=soon())
    assert info.value.message == "redirect refused: URL host does not resolve to a public address"


@pytest.mark.parametrize("url", ["http://intranet/", "http://intranet./a.jpg", "https://db:443/"])
def test_a_single_label_host_is_refused_before_any_lookup(url):
    # The resolver would try the function's own DNS search domains.
    resolver = FakeResolver({"intranet": [PUBLIC_V4], "db": [PUBLIC_V4]})
    with pytest.raises(errors.BadRequestError, match="fully qualified"):
        check_url(url, make_policy(resolver))
    assert resolver.hosts == []


@pytest.mark.parametrize("url", ["http://img.example.com/cat\ud800.png", "http://img.example.com/?q=\udfff"])
def test_a_lone_surrogate_in_a_url_is_a_bad_request_before_any_lookup(url):
    resolver = FakeResolver({"img.example.com": [PUBLIC_V4]})
    with pytest.raises(errors.BadRequestError, match="surrogate"):
        check_url(url, make_policy(resolver))  # JSON "\\ud800" decodes to one
    assert resolver.hosts == []


def test_at_most_three_addresses_of_each_family_are_dialled():
    # One DNS answer of thousands of addresses must not make one request send a SYN to each.
    v4 = [f"93.184.{i // 250}.{i % 250 + 1}" for i in range(2000)]
    v6 = [f"2606:2800:21f::{i + 1:x}" for i in range(50)]
    resolver = FakeResolver({"many.example": v4[:2] + v6 + v4[2:]})
    attempts = []

    def refuse_all(address, port, timeout):  # no socket is ever made
        attempts.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(errors.UpstreamError, match="refused"):
        fetch_all("http://many.example/", make_policy(resolver, refuse_all), deadline=soon())
    assert attempts == v4[:2] + v6[:3] + v4[2:3]


def test_temporary_dns_failure_is_upstream_error():
    resolver = FakeResolver({"flaky.example": socket.gaierror(socket.EAI_AGAIN, "Temporary failure")})
    with pytest.raises(errors.UpstreamError) as info:
        fetch_all("http://flaky.example/", make_policy(resolver), deadline=soon())
    assert "Temporary" not in info.value.message


def test_hanging_resolver_is_cut_by_the_deadline():
    release = threading.Event()

    answered = []

    def slow():
        release.wait(5)
        answered.append(True)
        return [PUBLIC_V4]

    resolver = FakeResolver({"slow.example": slow})
    with pytest.raises(errors.UpstreamTimeoutError):
        fetch_all("http://slow.example/", make_policy(resolver), deadline=soon(0.3))
    assert answered == []  # the fetch gave up while the lookup still hung
    release.set()


def test_deadline_already_passed():
    resolver = FakeResolver({"img.example.com": [PUBLIC_V4]})
    with pytest.raises(errors.UpstreamTimeoutError):
        fetch_all("http://img.example.com/", make_policy(resolver), deadline=time.monotonic() - 1)
    assert resolver.calls == []


def test_unexpected_resolver_exception_becomes_internal_error():
    resolver = FakeResolver({"bug.example": RuntimeError("boom at 10.0.0.5")})
    with pytest.raises(errors.InternalError) as info:
        fetch_all("http://bug.example/", make_policy(resolver), deadline=soon())
    assert "10.0.0.5" not in info.value.message and isinstance(info.value.__cause__, RuntimeError)


# --- connecting only to the validated address ----------------------------------------------------


def test_dns_rebinding_gets_no_second_lookup(server_factory):
    server = server_factory({"/cat.png": image(PNG)})
    answers = iter([["127.0.0.1"]])
    resolver = FakeResolver({"rebind.example": lambda: next(answers, ["169.254.169.254"])})
    connector = LoopbackOnlyConnector()
    policy = make_policy(resolver, connector, allowed_ports=(server.port,), exempt_networks=EXEMPT_LOOPBACK)
    assert fetch_all(f"http://rebind.example:{server.port}/cat.png", policy, deadline=soon()) == PNG
    assert resolver.hosts == ["rebind.example"]  # resolved once...
    assert connector.attempts == [("127.0.0.1", server.port)]  # ...and that answer is what we dialled
    assert server.requests[0].headers["host"] == f"rebind.example:{server.port}"


def test_falls_back_to_the_next_validated_address(server_factory):
    server = server_factory({"/cat.png": image(PNG)})
    resolver = FakeResolver({"two.example": ["127.0.0.2", "127.0.0.1"]})
    connector = LoopbackOnlyConnector(refuse=("127.0.0.2",))
    policy = make_policy(resolver, connector, allowed_ports=(server.port,),
                         exempt_networks=(ipaddress.ip_network("127.0.0.0/30"),))
    assert fetch_all(f"http://two.example:{server.port}/cat.png", policy, deadline=soon()) == PNG
    assert connector.attempts == [("127.0.0.2", server.port), ("127.0.0.1", server.port)]


def test_default_policy_blocks_loopback_and_allow_private_urls_opens_it(server_factory):
    server = server_factory({"/cat.png": image(PNG)})
    url = server.url("/cat.png")
    connector = LoopbackOnlyConnector()
    with pytest.raises(errors.BlockedUrlError):
        fetch_all(url, make_policy(connector=connector, allowed_ports=(server.port,)), deadline=soon())
    assert connector.attempts == [] and server.requests == []
    private = make_policy(connector=connector, allowed_ports=(server.port,), allow_private_urls=True)
    assert fetch_all(url, private, deadline=soon()) == PNG
    assert fetch_all(server.url("/cat.png", host="localhost"),
                     make_policy(FakeResolver({"localhost": ["127.0.0.1"]}), connector,
                                 allowed_ports=(server.port,), allow_private_urls=True), deadline=soon()) == PNG


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "169.254.170.2", "10.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1",
                "0.0.0.0", "fd00::1", "fe80::1", "::ffff:10.0.0.1"],
)
def test_allow_private_urls_opens_loopback_only(address):
    connector = LoopbackOnlyConnector()
    policy = make_policy(FakeResolver({"inside.example": [address]}), connector, allow_private_urls=True)
    with pytest.raises(errors.BlockedUrlError):
        fetch_all("http://inside.example/x.png", policy, deadline=soon())
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(errors.BlockedUrlError):
        fetch_all(f"http://{literal}/x.png", policy, deadline=soon())
    assert connector.attempts == []


def test_allow_private_urls_from_the_environment():
    assert FetchPolicy.from_settings(Settings.from_env({"ALLOW_PRIVATE_URLS": "true"})).allow_private_urls
    assert not FetchPolicy.from_settings(Settings.from_env({})).allow_private_urls


def test_default_connector_dials_the_numeric_address(server_factory):
    server = server_factory({"/cat.png": image(PNG)})
    resolver = FakeResolver({"img.example.com": ["127.0.0.1"]})
    policy = FetchPolicy(resolver=resolver, allowed_ports=(server.port,), exempt_networks=EXEMPT_LOOPBACK)
    assert fetch_all(f"http://img.example.com:{server.port}/cat.png", policy, deadline=soon()) == PNG


# --- redirects --------------------------------------------------------------------------------


def _policy_for(server, resolver=None, connector=None, **kwargs):
    return make_policy(resolver, connector, allowed_ports=(80, 443, server.port),
                       exempt_networks=EXEMPT_LOOPBACK, **kwargs)


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://169.254.170.2/v2/credentials/",
        "http://0xa9fea9fe/",
        "//169.254.169.254/latest/",
        "http://127.0.0.2:{port}/",  # loopback but not the exempted test server
        "http://localhost:{port}/",
        "http://[::1]:{port}/",
        "http://metadata.internal.example/",  # a name that resolves into private space
        "http://img.example.com:8080/",  # a port outside the allow-list
    ],
)
def test_redirect_into_private_space_is_blocked_without_connecting(server_factory, location):
    server = server_factory({})
    server.routes["/start"] = redirect(location.format(port=server.port))
    # localhost resolves as it would on a real host: refused for what it is, not as an unknown name
    resolver = FakeResolver({"metadata.internal.example": ["10.0.0.10"], "img.example.com": [PUBLIC_V4],
                             "localhost": ["127.0.0.1"]})
    connector = LoopbackOnlyConnector()
    with pytest.raises(errors.BlockedUrlError) as info:
        fetch_all(server.url("/start"), _policy_for(server, resolver, connector), deadline=soon())
    assert info.value.message.startswith("redirect refused")
    assert connector.attempts == [("127.0.0.1", server.port)]  # only the first hop was dialled
    assert [r.path for r in server.requests] == ["/start"]


def test_redirect_chain_with_relative_locations(server_factory):
    server = server_factory({"/img/cat.png": image(PNG)})
    server.routes["/a"] = redirect("b", 301)
    server.routes["/b"] = redirect("/c?x=1", 307)
    server.routes["/c"] = redirect(f"http://img.example.com:{server.port}/img/cat.png", 308)
    resolver = FakeResolver({"img.example.com": ["127.0.0.1"]})
    data = fetch_all(server.url("/a"), _policy_for(server, resolver), deadline=soon())
    assert data == PNG
    assert [r.path for r in server.requests] == ["/a", "/b", "/c?x=1", "/img/cat.png"]
    assert server.requests[-1].headers["host"] == f"img.example.com:{server.port}"


def test_too_many_redirects(server_factory):
    server = server_factory({})
    server.routes["/loop"] = redirect("/loop", 302)
    with pytest.raises(errors.UpstreamError, match="too many redirects"):
        fetch_all(server.url("/loop"), _policy_for(server, max_redirects=3), deadline=soon())
    assert len(server.requests) == 4  # the request plus three redirects followed


def test_zero_redirects_allowed(server_factory):
    server = server_factory({"/cat.png": image(PNG)})
    server.routes["/r"] = redirect("/cat.png")
    with pytest.raises(errors.UpstreamError):
        fetch_all(server.url("/r"), _policy_for(server, max_redirects=0), deadline=soon())
    assert fetch_all(server.url("/cat.png"), _policy_for(server, max_redirects=0), deadline=soon()) == PNG


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://x/", "http://user@img.example.com/",
                                      "http://intranet/"])
def test_unusable_redirect_targets_are_upstream_errors(server_factory, location):
    server = server_factory({"/r": redirect(location)})
    with pytest.raises(errors.UpstreamError):
        fetch_all(server.url("/r"), _policy_for(server), deadline=soon())


def test_redirect_without_location(server_factory):
    server = server_factory({"/r": lambda conn, req: send(conn, 302, b"")})
    with pytest.raises(errors.UpstreamError, match="Location"):
        fetch_all(server.url("/r"), _policy_for(server), deadline=soon())


# --- upstream status and protocol errors --------------------------------------------------------


@pytest.mark.parametrize("status", [404, 403, 500, 503, 304, 300, 100 + 99])
def test_non_2xx_upstream_is_a_bad_gateway(server_factory, status):
    server = server_factory({"/x": lambda conn, req: send(conn, status, b"<html>nope</html>",
                                                         content_type="text/html")})
    with pytest.raises(errors.UpstreamError) as info:
        fetch_all(server.url("/x"), _policy_for(server), deadline=soon())
    if status != 199:
        assert str(status) in info.value.message
    assert info.value.status == 502


def test_connection_refused_is_a_bad_gateway():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens on this port now
    policy = make_policy(allowed_ports=(port,), exempt_networks=EXEMPT_LOOPBACK)
    with pytest.raises(errors.UpstreamError, match="refused"):
        fetch_all(f"http://127.0.0.1:{port}/", policy, deadline=soon())


def test_connection_reset_and_garbage_are_bad_gateways(server_factory):
    def reset(conn, req):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = server_factory({
        "/reset": reset,
        "/garbage": lambda conn, req: conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        "/short": lambda conn, req: send(conn, 200, b"abc", content_length=100),
        "/badlength": lambda conn, req: send(conn, 200, b"abc", content_length="3, 4"),
    })
    for path in ("/reset", "/garbage", "/short", "/badlength"):
        with pytest.raises(errors.UpstreamError) as info:
            fetch_all(server.url(path), _policy_for(server), deadline=soon())
        assert info.value.status == 502, path


def test_compressed_body_is_refused(server_factory):
    server = server_factory({"/gz": lambda conn, req: send(conn, 200, b"\x1f\x8b" + b"\x00" * 20,
                                                          headers={"Content-Encoding": "gzip"})})
    with pytest.raises(errors.UpstreamError, match="compressed"):
        fetch_all(server.url("/gz"), _policy_for(server), deadline=soon())
    assert server.requests[0].headers["accept-encoding"] == "identity"


# --- size cap -----------------------------------------------------------------------------------


def test_declared_length_over_the_cap_is_rejected_before_reading(server_factory):
    waited = []

    def huge(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 999999999999\r\n\r\n")
        time.sleep(3)  # never sends the body; the fetcher must not wait for it
        waited.append(True)

    server = server_factory({"/huge": huge})
    with pytest.raises(errors.PayloadTooLargeError) as info:
        fetch_all(server.url("/huge"), _policy_for(server, max_download_bytes=1000), deadline=soon())
    assert waited == []  # refused while the server still held the body back
    assert info.value.status == 413 and "1000" in info.value.message


@pytest.mark.parametrize("framing", ["close-delimited", "chunked", "lying-small-length"])
def test_oversize_stream_is_cut_while_streaming(server_factory, framing):
    cap = 10_000
    sent = {"bytes": 0}
    finished = threading.Event()

    def endless(conn, req):
        if framing == "close-delimited":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n")
        elif framing == "chunked":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:  # both headers: HTTP/1.1 says chunked wins, the Content-Length is a lie
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 10\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
        block = b"\xff" * 4096
        try:
            for _ in range(10_000):  # up to 40 MB
                if framing == "close-delimited":
                    conn.sendall(block)
                else:
                    conn.sendall(b"1000\r\n" + block + b"\r\n")
                sent["bytes"] += len(block)
            if framing != "close-delimited":
                conn.sendall(b"0\r\n\r\n")  # a complete body: only the cap can refuse it
        except OSError:
            pass
        finally:
            finished.set()

    server = server_factory({"/big": endless})
    with pytest.raises(errors.PayloadTooLargeError):
        fetch_all(server.url("/big"), _policy_for(server, max_download_bytes=cap), deadline=soon(10))
    assert finished.wait(30)  # the server stops once the fetcher has hung up
    # Cut while streaming: the server got no further than the cap plus what the two sockets' buffers hold
    # (a few MB on loopback), far from the 40 MB a fetcher that checks the size at the end would take.
    assert sent["bytes"] < 20_000_000


def test_exactly_the_cap_is_fine_one_more_byte_is_not(server_factory):
    cap = 5000
    server = server_factory({
        "/exact": lambda conn, req: send(conn, 200, b"a" * cap, content_length=None),
        "/over": lambda conn, req: send(conn, 200, b"a" * (cap + 1), content_length=None),
    })
    policy = _policy_for(server, max_download_bytes=cap)
    assert len(fetch_all(server.url("/exact"), policy, deadline=soon())) == cap
    with pytest.raises(errors.PayloadTooLargeError):
        fetch_all(server.url("/over"), policy, deadline=soon())


def test_content_length_is_the_frame_not_the_size(server_factory):
    # A server that says 10 and sends more: only the declared 10 bytes are the body.
    server = server_factory({"/lie": lambda conn, req: send(conn, 200, b"0123456789" + b"z" * 50_000,
                                                           content_length=10)})
    assert fetch_all(server.url("/lie"), _policy_for(server, max_download_bytes=100), deadline=soon()) == b"0123456789"


def test_repeated_equal_content_lengths_still_frame_the_body(server_factory):
    # http.client alone reads "10, 10" as no length (body up to the close); we keep the frame.
    server = server_factory({"/twice": lambda conn, req: send(conn, 200, b"0123456789" + b"z" * 50_000,
                                                             content_length="10, 10")})
    assert fetch_all(server.url("/twice"), _policy_for(server, max_download_bytes=100), deadline=soon()) == b"0123456789"


def test_the_pinned_connection_never_opens_a_socket_itself():
    # Once its socket is gone, http.client would reconnect by name; the pinned one refuses.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    conn = fetch._PinnedConnection("127.0.0.1", port, 1.0, socket.socket())
    conn.close()
    with pytest.raises(ConnectionError, match="cannot reconnect"):
        conn.request("GET", "/")


# --- time bounds -----------------------------------------------------------------------------------


def test_trickling_body_is_cut_by_the_deadline(server_factory):
    route = trickle(0.05, 10_000)
    server = server_factory({"/slow": route})
    with pytest.raises(errors.UpstreamTimeoutError) as info:
        fetch_all(server.url("/slow"), _policy_for(server, read_timeout=5), deadline=soon(0.8))
    assert info.value.status == 504
    assert route.outcome.wait() == "client closed"  # the fetcher hung up, not the server (after 5 s)


def test_trickling_headers_are_cut_by_the_deadline(server_factory):
    # Headers that would take 14 s: only the deadline's watchdog can cut a read that keeps getting bytes.
    route = trickle(0.05, 10, headers_first=False, header_padding=200)
    server = server_factory({"/slow": route})
    with pytest.raises(errors.UpstreamTimeoutError):
        fetch_all(server.url("/slow"), _policy_for(server, read_timeout=5), deadline=soon(0.8))
    assert route.outcome.wait() == "client closed"  # the fetcher hung up, not the server (after 5 s)


def test_silent_server_hits_the_read_timeout(server_factory):
    server = server_factory({"/silent": lambda conn, req: time.sleep(3)})
    # Without the read timeout the server's close after 3 s would end it as a 502, well inside the deadline.
    with pytest.raises(errors.UpstreamTimeoutError):
        fetch_all(server.url("/silent"), _policy_for(server, read_timeout=0.3), deadline=soon(10))


def test_connect_timeout_is_a_gateway_timeout():
    def blackhole(address, port, timeout):
        raise socket.timeout("timed out")

    policy = make_policy(FakeResolver({"img.example.com": [PUBLIC_V4]}), blackhole)
    with pytest.raises(errors.UpstreamTimeoutError):
        fetch_all("http://img.example.com/", policy, deadline=soon())


# --- TLS ---------------------------------------------------------------------------------------------

TLS_HOST = "images.fetch-test.example"


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory):
    return make_tls_material(tmp_path_factory.mktemp("tls"), [TLS_HOST])


@pytest.fixture
def tls_server(server_factory, tls_material):
    _, cert, key = tls_material
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return server_factory({"/cat.png": image(PNG)}, tls=context)


def _tls_policy(server, ca, hosts=(TLS_HOST,), **kwargs):
    resolver = FakeResolver({h: ["127.0.0.1"] for h in hosts})
    return make_policy(resolver, allowed_ports=(server.port,), exempt_networks=EXEMPT_LOOPBACK,
                       ca_bundle=str(ca), **kwargs)


def test_https_with_verification_sni_and_host_header(tls_server, tls_material):
    ca = tls_material[0]
    data = fetch_all(f"https://{TLS_HOST}:{tls_server.port}/cat.png", _tls_policy(tls_server, ca), deadline=soon())
    assert data == PNG
    assert tls_server.snis == [TLS_HOST]
    assert tls_server.requests[0].headers["host"] == f"{TLS_HOST}:{tls_server.port}"


def _tls_and_plain(server_factory, tls_material, tls_routes, plain_routes):
    _, cert, key = tls_material
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure, plain = server_factory(tls_routes, tls=context), server_factory(plain_routes)
    policy = make_policy(FakeResolver({TLS_HOST: ["127.0.0.1"]}), allowed_ports=(secure.port, plain.port),
                         exempt_networks=EXEMPT_LOOPBACK, ca_bundle=str(tls_material[0]))
    return secure, plain, policy


def test_https_redirecting_to_plain_http_is_refused(server_factory, tls_material):
    # Asked for https, the image must not come over a connection anyone on the path could rewrite.
    secure, plain, policy = _tls_and_plain(server_factory, tls_material, {}, {"/cat.png": image(PNG)})
    secure.routes["/go"] = redirect(f"http://{TLS_HOST}:{plain.port}/cat.png")
    with pytest.raises(errors.UpstreamError, match="from https to plain http"):
        fetch_all(f"https://{TLS_HOST}:{secure.port}/go", policy, deadline=soon())
    assert plain.requests == []


def test_plain_http_redirecting_to_https_is_followed(server_factory, tls_material):
    secure, plain, policy = _tls_and_plain(server_factory, tls_material, {"/cat.png": image(PNG)}, {})
    plain.routes["/go"] = redirect(f"https://{TLS_HOST}:{secure.port}/cat.png")
    assert fetch_all(f"http://{TLS_HOST}:{plain.port}/go", policy, deadline=soon()) == PNG


def test_https_wrong_hostname_fails_verification(tls_server, tls_material):
    ca = tls_material[0]
    policy = _tls_policy(tls_server, ca, hosts=("other.fetch-test.example",))
    with pytest.raises(errors.UpstreamError) as info:
        fetch_all(f"https://other.fetch-test.example:{tls_server.port}/cat.png", policy, deadline=soon())
    assert "TLS" in info.value.message
    assert tls_server.requests == []  # no request was sent over the unverified connection


def test_https_ip_literal_does_not_match_a_name_certificate(tls_server, tls_material):
    ca = tls_material[0]
    policy = _tls_policy(tls_server, ca)
    with pytest.raises(errors.UpstreamError):
        fetch_all(f"https://127.0.0.1:{tls_server.port}/cat.png", policy, deadline=soon())
    assert tls_server.requests == []


def test_https_untrusted_ca_fails(tls_server, tmp_path):
    other_ca, _, _ = make_tls_material(tmp_path, ["unrelated.example"])
    policy = _tls_policy(tls_server, other_ca)
    with pytest.raises(errors.UpstreamError):
        fetch_all(f"https://{TLS_HOST}:{tls_server.port}/cat.png", policy, deadline=soon())
    assert tls_server.requests == []


def test_https_system_trust_store_rejects_a_private_ca(tls_server):
    resolver = FakeResolver({TLS_HOST: ["127.0.0.1"]})
    policy = make_policy(resolver, allowed_ports=(tls_server.port,), exempt_networks=EXEMPT_LOOPBACK)
    with pytest.raises(errors.UpstreamError):
        fetch_all(f"https://{TLS_HOST}:{tls_server.port}/cat.png", policy, deadline=soon())


def test_tls_handshake_stall_is_cut_by_the_deadline(server_factory):
    # A "TLS" server that accepts, reads the ClientHello and never answers it, until the client hangs up.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    outcome = Outcome()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            try:
                while conn.recv(4096):
                    pass
                outcome.end("client closed")
            except OSError:
                outcome.end("gave up")

    threading.Thread(target=serve, daemon=True).start()
    try:
        resolver = FakeResolver({TLS_HOST: ["127.0.0.1"]})
        policy = make_policy(resolver, allowed_ports=(port,), exempt_networks=EXEMPT_LOOPBACK,
                             connect_timeout=60, read_timeout=60)
        with pytest.raises(errors.UpstreamTimeoutError):
            fetch_all(f"https://{TLS_HOST}:{port}/", policy, deadline=soon(0.5))
        assert outcome.wait() == "client closed"  # the deadline cut it, not the 60 s read timeout
    finally:
        listener.close()


def test_plain_http_to_a_tls_port_is_a_bad_gateway(tls_server, tls_material):
    policy = _tls_policy(tls_server, tls_material[0])
    with pytest.raises(errors.UpstreamError):
        fetch_all(f"http://{TLS_HOST}:{tls_server.port}/cat.png", policy, deadline=soon())


# --- error hygiene ---------------------------------------------------------------------------------


def test_error_messages_carry_no_addresses_or_library_text(server_factory, tls_server, tls_material):
    server = server_factory({"/x": lambda conn, req: conn.sendall(b"garbage\r\n\r\n")})
    messages = []
    for url, policy in [
        (server.url("/x"), _policy_for(server)),
        (f"https://other.fetch-test.example:{tls_server.port}/cat.png",
         _tls_policy(tls_server, tls_material[0], hosts=("other.fetch-test.example",))),
        ("http://evil.example/", make_policy(FakeResolver({"evil.example": ["10.9.8.7"]}))),
    ]:
        with pytest.raises(errors.ClassifierError) as info:
            fetch_all(url, policy, deadline=soon())
        messages.append(info.value.message)
        assert info.value.__cause__ is not None or isinstance(info.value, errors.BlockedUrlError)
    for message in messages:
        for leak in ("127.0.0.1", "10.9.8.7", "Errno", "urllib3", "SSL:", "CERTIFICATE_VERIFY", "Traceback"):
            assert leak not in message, (leak, message)


def test_invalid_allow_list_entry_fails_at_cold_start():
    with pytest.raises(ValueError):
        FetchPolicy(allowed_hosts=("a" * 70 + ".example",))


def test_a_redirect_to_an_unparsable_url_is_an_upstream_error(server_factory):
    server = server_factory({})
    server.routes["/start"] = redirect("http://[::1/x")  # urljoin raises ValueError("Invalid IPv6 URL")
    with pytest.raises(errors.UpstreamError, match="unusable URL"):
        fetch_all(server.url("/start"), _policy_for(server), deadline=soon())


@pytest.mark.parametrize("entry", ["https://img.example.com", "img.example.com:8080", "img.example.com/cats",
                                   "exa mple.com", "user@img.example.com"])
def test_an_allowed_hosts_entry_that_is_not_a_host_fails_the_cold_start(entry):
    with pytest.raises(ValueError, match="invalid allowed_hosts entry"):
        make_policy(None, None, allowed_hosts=(entry,))


def test_allowed_hosts_takes_names_wildcards_and_ip_literals():
    policy = make_policy(None, None, allowed_hosts=("IMG.Example.com.", "*.cdn.example", "[::1]", "::2", "203.0.113.9",
                                                    "*.example", "localhost"))
    assert policy.allowed_hosts == ("img.example.com", "*.cdn.example", "::1", "::2", "203.0.113.9", "*.example",
                                    "localhost")


@pytest.mark.parametrize("entry", ["images", "images.", "intranet"])
def test_a_single_label_allowed_host_fails_the_cold_start(entry):
    # No URL may name such a host (refused before the lookup): the entry could never match.
    with pytest.raises(ValueError, match="invalid allowed_hosts"):
        make_policy(None, None, allowed_hosts=(entry,))


def test_lookups_that_outlive_their_requests_do_not_starve_the_next_request():
    """A lookup past its request's deadline keeps its thread until the resolver gives up; with 4
    threads, five such lookups made a healthy host's next request time out in the queue."""
    release = threading.Event()

    def slow():
        release.wait(5)
        return ["93.184.216.34"]

    policy = make_policy(FakeResolver({"slow.example": slow, "ok.example": ["93.184.216.34"]}))
    try:
        for _ in range(6):
            with pytest.raises(errors.UpstreamTimeoutError):
                check_url("https://slow.example/x", policy, deadline=soon(0.05))
        # Queued behind the stuck lookups, it would time out instead (they hang until released).
        assert check_url("https://ok.example/x", policy, deadline=soon(0.5)).addresses == ("93.184.216.34",)
    finally:
        release.set()


def test_a_refused_connection_or_failed_lookup_leaves_no_reference_cycle():
    import gc

    policy = make_policy(FakeResolver({"down.example": ["93.184.216.34"]}),
                         connector=lambda address, port, timeout: (_ for _ in ()).throw(ConnectionRefusedError()))
    gc.collect()
    gc.disable()
    try:
        for url in ("https://down.example/x", "https://unknown.example/x"):
            with pytest.raises(errors.ClassifierError):
                fetch_url(url, policy, deadline=soon())
            assert gc.collect() == 0, url
    finally:
        gc.enable()
