"""Property tests of URL validation in classifier.fetch (hypothesis).

No network: literal hosts never reach the resolver, names go to a fake resolver, and
nothing here connects (``check_url`` only validates and resolves). The blocked networks
below are written out from the requirements (issue 4), independently of
``classifier._netguard``, so the tests check the implementation against the spec.

Example counts: run with ``--hypothesis-show-statistics`` to see them; ``EXAMPLES`` below
sets how many each property tries.
"""

from __future__ import annotations

import socket
from collections import Counter
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings, strategies as st

from classifier import _netguard, errors
from classifier.fetch import FetchPolicy, check_url

from fetch_fixtures.helpers import FakeResolver, ForbiddenConnect

EXAMPLES = 1500
RUNS: Counter[str] = Counter()  # examples actually executed per property, printed at module teardown
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPEC_BLOCKED_V4 = [IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)]
SPEC_BLOCKED_V6 = [IPv6Network(n) for n in (
    "::/128", "::1/128", "::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]
NOT_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
EMBEDDING_PREFIXES = [IPv6Network("::ffff:0:0/96"), IPv6Network("64:ff9b::/96"), IPv6Network("2002::/16")]


def spec_blocks_v4(address: IPv4Address) -> bool:
    return any(address in net for net in SPEC_BLOCKED_V4)


class _NoResolver(FakeResolver):
    def __call__(self, *args, **kwargs):
        raise ForbiddenConnect("a literal address must never be sent to the resolver")


@pytest.fixture(scope="module", autouse=True)
def no_network_and_report():
    with pytest.MonkeyPatch.context() as mp:
        def refuse(*args, **kwargs):
            raise ForbiddenConnect("network use in a property test")
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield
    print("\nhypothesis examples run per property:", dict(RUNS))


def _refusing_connector(*args):
    raise ForbiddenConnect("check_url must not connect")


POLICY = FetchPolicy(resolver=_NoResolver(), connector=_refusing_connector)


# --- spellings -------------------------------------------------------------------------------


@st.composite
def ipv4_number(draw, value: int) -> str:
    """One inet_aton number in decimal, octal or hex, with optional leading zeros and case."""
    radix = draw(st.sampled_from(["dec", "oct", "hex"]))
    if radix == "dec":
        return str(value)
    zeros = "0" * draw(st.integers(0, 3))
    if radix == "oct":
        return "0" + zeros + format(value, "o")
    digits = format(value, "x")
    digits = "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in digits)
    return draw(st.sampled_from(["0x", "0X"])) + zeros + digits


@st.composite
def ipv4_spelling(draw, address: IPv4Address) -> str:
    """``address`` as any host spelling that getaddrinfo/browsers read as that IPv4 address."""
    octets = address.packed
    n = int(address)
    kind = draw(st.sampled_from(["1", "2", "3", "4", "v6-mapped", "v6-mapped-hex", "nat64"]))
    if kind == "v6-mapped":
        return f"[::ffff:{address}]"
    if kind == "v6-mapped-hex":
        return f"[{draw(st.sampled_from(['::ffff:', '0:0:0:0:0:FFFF:', '::FFFF:']))}{n >> 16:x}:{n & 0xffff:x}]"
    if kind == "nat64":
        return f"[64:ff9b::{n >> 16:x}:{n & 0xffff:x}]"
    parts = int(kind)
    if parts == 1:
        values = [n]
    elif parts == 2:
        values = [octets[0], n & 0xFFFFFF]
    elif parts == 3:
        values = [octets[0], octets[1], n & 0xFFFF]
    else:
        values = list(octets)
    host = ".".join(draw(ipv4_number(v)) for v in values)
    if draw(st.booleans()):
        host += "."
    style = draw(st.sampled_from(["plain", "plain", "percent", "fullwidth", "ideographic-dots"]))
    if style == "percent":
        host = "".join(f"%{ord(c):02X}" if draw(st.booleans()) else c for c in host)
    elif style == "fullwidth":
        host = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() and draw(st.booleans()) else c for c in host)
    elif style == "ideographic-dots":
        host = host.replace(".", draw(st.sampled_from(["\u3002", "\uff0e", "\uff61"])))
    return host


def v4_in(network: IPv4Network) -> st.SearchStrategy[IPv4Address]:
    return st.integers(int(network.network_address), int(network.broadcast_address)).map(IPv4Address)


def v6_in(network: IPv6Network) -> st.SearchStrategy[IPv6Address]:
    return st.integers(int(network.network_address), int(network.broadcast_address)).map(IPv6Address)


def _complement(universe: IPv4Network, blocked: list[IPv4Network]) -> list[IPv4Network]:
    networks = [universe]
    for hole in blocked:
        rest = []
        for net in networks:
            if hole.subnet_of(net):
                rest.extend(net.address_exclude(hole))
            elif not net.subnet_of(hole):
                rest.append(net)
        networks = rest
    return sorted(networks)


PUBLIC_V4_NETWORKS = _complement(IPv4Network("0.0.0.0/0"), SPEC_BLOCKED_V4)
# The addresses right next to each blocked range: off-by-one mistakes live here.
V4_EDGES_OUTSIDE = sorted(
    {IPv4Address(int(net.network_address) - 1) for net in SPEC_BLOCKED_V4 if int(net.network_address) > 0}
    | {IPv4Address(int(net.broadcast_address) + 1) for net in SPEC_BLOCKED_V4 if int(net.broadcast_address) < 2**32 - 1}
)
V4_EDGES_OUTSIDE = [a for a in V4_EDGES_OUTSIDE if not spec_blocks_v4(a)]
V4_EDGES_INSIDE = sorted({a for net in SPEC_BLOCKED_V4 for a in (net.network_address, net.broadcast_address)})

blocked_v4 = st.one_of(st.sampled_from(SPEC_BLOCKED_V4).flatmap(v4_in), st.sampled_from(V4_EDGES_INSIDE))
public_v4 = st.one_of(
    st.sampled_from(PUBLIC_V4_NETWORKS).flatmap(v4_in),  # every public block, small ones as likely as big
    st.sampled_from(V4_EDGES_OUTSIDE),
)


def v6_text(address: IPv6Address, upper: bool, exploded: bool) -> str:
    text = address.exploded if exploded else address.compressed
    return text.upper() if upper else text


# --- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(st.data())
def test_blocked_ipv4_in_any_spelling_is_refused(data):
    address = data.draw(blocked_v4, label="address")
    host = data.draw(ipv4_spelling(address), label="host")
    RUNS["blocked_ipv4_any_spelling"] += 1
    with pytest.raises(errors.BlockedUrlError):
        check_url(f"http://{host}/latest/meta-data/", POLICY)


@PROPERTY
@given(st.data())
def test_public_ipv4_in_any_spelling_is_accepted_as_that_address(data):
    address = data.draw(public_v4, label="address")
    host = data.draw(ipv4_spelling(address), label="host")
    RUNS["public_ipv4_any_spelling"] += 1
    target = check_url(f"https://{host}/cat.png", POLICY)
    if host.startswith("[64:ff9b::"):
        assert target.addresses == (str(IPv6Address(int(IPv6Address("64:ff9b::")) | int(address))),)
    else:
        assert target.addresses == (str(address),)
    assert target.is_ip_literal


@st.composite
def blocked_v6(draw) -> IPv6Address:
    choice = draw(st.sampled_from(["listed", "outside-global", "embedded-v4"]))
    if choice == "listed":
        return draw(st.sampled_from(SPEC_BLOCKED_V6).flatmap(v6_in))
    if choice == "outside-global":
        address = IPv6Address(draw(st.integers(0, 2**128 - 1)))
        assume(address not in NOT_GLOBAL_UNICAST_V6)
        assume(not any(address in p for p in EMBEDDING_PREFIXES))
        return address
    v4 = int(draw(blocked_v4))
    prefix = draw(st.sampled_from(["mapped", "nat64", "6to4"]))
    if prefix == "mapped":
        return IPv6Address((0xFFFF << 32) | v4)
    if prefix == "nat64":
        return IPv6Address(int(IPv6Address("64:ff9b::")) | v4)
    return IPv6Address((0x2002 << 112) | (v4 << 80) | draw(st.integers(0, 2**80 - 1)))


@PROPERTY
@given(blocked_v6(), st.booleans(), st.booleans())
def test_blocked_ipv6_literals_are_refused(address, upper, exploded):
    host = v6_text(address, upper, exploded)
    RUNS["blocked_ipv6_literal"] += 1
    with pytest.raises(errors.BlockedUrlError):
        check_url(f"http://[{host}]/", POLICY)


@st.composite
def public_v6(draw) -> IPv6Address:
    choice = draw(st.sampled_from(["global", "6to4-public", "nat64-public"]))
    if choice == "global":
        address = draw(v6_in(NOT_GLOBAL_UNICAST_V6))
        assume(not any(address in net for net in SPEC_BLOCKED_V6))
        assume(address not in IPv6Network("2002::/16"))
        return address
    v4 = int(draw(public_v4))
    if choice == "nat64-public":
        return IPv6Address(int(IPv6Address("64:ff9b::")) | v4)
    return IPv6Address((0x2002 << 112) | (v4 << 80) | draw(st.integers(0, 2**80 - 1)))


@PROPERTY
@given(public_v6(), st.booleans(), st.booleans())
def test_public_ipv6_literals_are_accepted(address, upper, exploded):
    RUNS["public_ipv6_literal"] += 1
    target = check_url(f"https://[{v6_text(address, upper, exploded)}]:443/x.png", POLICY)
    assert target.addresses == (str(address),)
    assert target.host_header == f"[{address}]"


@PROPERTY
@given(st.one_of(blocked_v4, blocked_v6()), st.lists(st.one_of(public_v4, public_v6()), max_size=3),
       st.randoms(use_true_random=False))
def test_a_name_with_any_blocked_address_is_refused(bad, good, rnd):
    answers = [str(a) for a in good] + [str(bad)]
    rnd.shuffle(answers)
    RUNS["name_with_blocked_address"] += 1
    resolver = FakeResolver({"photos.example.org": answers})
    policy = FetchPolicy(resolver=resolver, connector=_refusing_connector)
    with pytest.raises(errors.BlockedUrlError) as info:
        check_url("https://photos.example.org/cat.jpg", policy)
    assert str(bad) not in info.value.message
    assert resolver.hosts == ["photos.example.org"]


@PROPERTY
@given(st.lists(st.one_of(public_v4, public_v6()), min_size=1, max_size=4))
def test_a_name_with_only_public_addresses_is_accepted(good):
    RUNS["name_with_public_addresses"] += 1
    resolver = FakeResolver({"photos.example.org": [str(a) for a in good]})
    policy = FetchPolicy(resolver=resolver, connector=_refusing_connector)
    target = check_url("https://photos.example.org/cat.jpg", policy)
    expected = []
    for a in good:
        a = a.ipv4_mapped or a if isinstance(a, IPv6Address) else a
        if str(a) not in expected:
            expected.append(str(a))
    assert list(target.addresses) == expected


# --- the guard agrees with the OS and with the stdlib ---------------------------------------------

_ASCII_IPV4_ALPHABET = "0123456789xXabcdefABCDEF."


@st.composite
def ipv4_like(draw) -> str:
    """Mostly well-formed numeric hosts (random radix, overflowing values, 1-5 parts), sometimes noise."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.text(_ASCII_IPV4_ALPHABET, min_size=1, max_size=24))
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        value = draw(st.one_of(st.integers(0, 255), st.integers(0, 2**33), st.sampled_from([0, 255, 256, 65535,
                                                                                          65536, 2**24 - 1, 2**24, 2**32 - 1, 2**32])))
        part = draw(ipv4_number(value))
        if draw(st.integers(0, 9)) == 0:
            part = draw(st.sampled_from(["", "0x", "08", "09", "0x1g", part + "8", "1e3", "x1"]))
        parts.append(part)
    return ".".join(parts) + draw(st.sampled_from(["", "", "", "."]))


@PROPERTY
@given(ipv4_like())
@example("0x7f.1")
@example("0177.0.0.1")
@example("2130706433")
@example("127.1")
@example("0x")
@example("0x.1")
@example("4294967296")
def test_ipv4_parser_matches_inet_aton(text):
    RUNS["inet_aton_agreement"] += 1
    ours = _netguard.parse_ipv4_any_spelling(text)
    try:
        theirs = IPv4Address(socket.inet_aton(text))
    except OSError:
        theirs = None
    event("inet_aton accepts" if theirs is not None else "inet_aton rejects")
    if theirs is not None:
        # Whatever the OS resolver would read as an address, we read as the same address.
        assert ours == theirs
    elif ours is not None:
        # We may read more as literals than glibc does (WHATWG's bare "0x" is 0), never fewer.
        assert any(part in ("0x", "0X") for part in text.split("."))
    as_host = text[:-1] if text.endswith(".") else text  # one trailing dot is the FQDN spelling
    if _netguard.parse_ipv4_any_spelling(as_host) is None and _netguard.ends_in_number(text):
        # Numeric-looking but not an address: refused as a bad URL, never sent to DNS.
        with pytest.raises(errors.BadRequestError):
            check_url(f"http://{text}/", POLICY)


@PROPERTY
@given(st.one_of(st.integers(0, 2**32 - 1).map(IPv4Address), st.integers(0, 2**128 - 1).map(IPv6Address)))
def test_every_non_global_address_per_ipaddress_is_blocked(address):
    RUNS["stdlib_superset"] += 1
    reason = _netguard.blocked_reason(address)
    embedded = isinstance(address, IPv6Address) and any(address in p for p in EMBEDDING_PREFIXES)
    stdlib_says_local = (not address.is_global or address.is_private or address.is_loopback
                         or address.is_link_local or address.is_multicast or address.is_unspecified
                         or address.is_reserved)
    if stdlib_says_local and not embedded:
        assert reason is not None
    if reason is None and not embedded:
        assert address.is_global


def test_known_spellings():
    """Hand-picked forms from the issue; the properties above generalise them."""
    for host in ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "127.0.0.1.",
                 "%31%32%37.0.0.1", "\uff11\uff12\uff17.0.0.1", "0xa9fea9fe", "[64:ff9b::a9fe:a9fe]",
                 "[2002:a9fe:a9fe::]", "[::]"]:
        with pytest.raises(errors.BlockedUrlError):
            check_url(f"http://{host}/", POLICY)
