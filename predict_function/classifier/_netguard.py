"""Pure rules of the SSRF guard: which addresses are public, and how the OS spells hosts.

Nothing here does I/O. ``classifier.fetch`` uses these rules on every host it is asked
to contact: the caller's URL and each redirect target.

Address policy: an address is *public* only if it is outside every special-purpose
range below (IANA IPv4/IPv6 special-purpose registries, plus the AWS link-local
services: instance metadata 169.254.169.254, ECS task metadata 169.254.170.2,
Route 53 resolver 169.254.169.253, time sync 169.254.169.123, and IMDS over IPv6
fd00:ec2::254). IPv6 is allow-listed: only global unicast 2000::/3 minus its special
blocks is public; forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``) are judged by the IPv4 address
they carry; the deprecated IPv4-compatible ``::a.b.c.d`` and every other ``::/8``
form are refused outright.
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address

# (network, category) pairs. The category is for logs only; callers see a generic message.
BLOCKED_V4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host on Linux
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),  # IMDS, ECS metadata, Route 53 resolver, time sync
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes the limited broadcast 255.255.255.255
    )
)

V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
V6_MAPPED = IPv6Network("::ffff:0:0/96")
V6_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix, last 32 bits are IPv4
V6_6TO4 = IPv6Network("2002::/16")  # bits 16..48 are IPv4

# Special blocks inside 2000::/3. Everything outside 2000::/3 is refused by default
# (::/8 incl. ::, ::1 and IPv4-compatible; 64:ff9b:1::/48; 100::/64; fc00::/7; fe80::/10;
# fec0::/10; ff00::/8; 5f00::/16; all unallocated space).
BLOCKED_V6_IN_GLOBAL: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("2001::/23", "IETF protocol assignments (Teredo, benchmarking, ORCHID)"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
    )
)

# Every network a caller must never reach, for tests and documentation. IPv6 entries
# listed here are a sample of the default-deny space outside 2000::/3.
BLOCKED_V6_EXAMPLES: tuple[tuple[IPv6Network, str], ...] = BLOCKED_V6_IN_GLOBAL + tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("5f00::/16", "SRv6 SIDs"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be contacted, or ``None`` if it is a public address."""
    if isinstance(address, IPv4Address):
        for network, why in BLOCKED_V4:
            if address in network:
                return why
        return None
    if address.scope_id:
        return "scoped IPv6"
    embedded = embedded_ipv4(address)
    if embedded is not None:
        why = blocked_reason(embedded)
        return None if why is None else f"IPv6 form of an IPv4 {why} address"
    if address not in V6_GLOBAL_UNICAST:
        return "non-global IPv6"
    for network, why in BLOCKED_V6_IN_GLOBAL:
        if address in network:
            return why
    return None


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address carried by an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address."""
    if address in V6_MAPPED:
        return address.ipv4_mapped
    if address in V6_NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address in V6_6TO4:
        return address.sixtofour
    return None


def connect_address(address: IPAddress) -> IPAddress:
    """The address to open a socket to: IPv4-mapped IPv6 is dialled as the IPv4 it maps."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --- numeric host spellings --------------------------------------------------------

_DEC = frozenset("0123456789")
_OCT = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_PART_CHARS = 64  # far beyond any valid value; keeps int() cheap


def _ipv4_number(part: str) -> int | None:
    """One dotted part as inet_aton reads it: 0x.. hex, 0.. octal, else decimal."""
    if not part or len(part) > _MAX_PART_CHARS:
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not digits:
            # glibc rejects a bare "0x"; the WHATWG URL parser reads it as 0. We take the
            # WHATWG reading: it only ever makes the host an IP literal (never DNS).
            return 0
        return int(digits, 16) if set(digits) <= _HEX else None
    if part[0] == "0" and len(part) > 1:
        digits = part[1:]
        return int(digits, 8) if set(digits) <= _OCT else None
    return int(part, 10) if set(part) <= _DEC else None


def parse_ipv4_any_spelling(text: str) -> IPv4Address | None:
    """Parse an IPv4 literal the way ``inet_aton`` (and so ``getaddrinfo``) does.

    Accepts 1 to 4 dotted parts, each decimal, octal (leading 0) or hex (0x), the last
    part filling the remaining bytes: ``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
    ``127.1`` are all 127.0.0.1. Returns ``None`` if ``text`` is not such a literal.
    No whitespace or trailing garbage is accepted (stricter than glibc's inet_aton).
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        value = _ipv4_number(part)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = (number << 8) | v
    number = (number << (8 * (4 - len(head)))) | last
    return IPv4Address(number)


_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)\Z")


def ends_in_number(host: str) -> bool:
    """WHATWG's "ends in a number": a host whose last label is numeric is an IPv4 literal or invalid."""
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return bool(labels) and bool(_NUMERIC_LABEL.match(labels[-1]))


def parse_ipv6_literal(text: str) -> IPv6Address | None:
    """The address inside ``[...]`` of a URL, without zone identifiers."""
    if "%" in text:
        return None
    try:
        return IPv6Address(text)
    except ValueError:
        return None


def parse_resolved(text: str) -> IPAddress | None:
    """An address string returned by ``getaddrinfo`` (IPv6 may carry a ``%zone``)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
