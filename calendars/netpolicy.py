"""Which addresses the bot may fetch a subscribed calendar from.

A subscription URL is typed by a person and fetched by the server, so without a
policy it reaches whatever the server can: the database port, the cloud metadata
service, the bot's own feed. Only public addresses are allowed, plus what the
operators list in RELEASEBOT_CALENDAR_ALLOW. The check runs where the socket is
opened (calendars/fetch.py), on the address that is then connected to, so a DNS
answer that changes between check and connect gains nothing.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]  # (host, port) -> addresses, as text

NOT_ALLOWED = "refused by policy: address not allowed"
OWN_FEED = "refused by policy: that is the bot's own address"
BAD_URL = "not an http(s) address"
UNRESOLVED = "could not connect"  # the same words as a refused port: a name's existence is not told apart

# Cloud metadata services. Most sit in link-local or private space anyway; these
# are named so an allow-list entry for a wide range does not let them through.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254", "fd00:ec2::23",
    "100.100.100.200", "168.63.129.16", "192.0.0.192"))
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The policy refuses the URL or address; str() is the category shown to people."""


class Unresolvable(Exception):
    pass


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(UNRESOLVED) from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden(ip: IPAddress) -> bool:
    """Loopback, private, link-local, multicast, unspecified, reserved, shared (100.64/10),
    documentation and cloud-metadata addresses; an IPv6 address that carries an IPv4 one is judged by it."""
    inner = embedded_ipv4(ip)
    if inner is not None:  # an IPv6 form of an IPv4 address reaches what the IPv4 one does
        return forbidden(inner)
    if ip in METADATA_ADDRESSES:
        return True
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_unspecified
            or ip.is_reserved or not ip.is_global)


def _host_key(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(_host_key(host).split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hosts or self.networks)


def parse_allow(text: str) -> AllowList:
    """`calendar.corp.example,10.20.0.5,10.30.0.0/16,fd12::/64` -> AllowList. ValueError names each bad entry."""
    hosts, networks, wrong = set(), [], []
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = _host_key(entry)
        labels = name.split(".")
        if "/" in entry or not all(0 < len(lb) <= 63 and lb.replace("-", "").replace("_", "").isalnum()
                                   and lb.isascii() for lb in labels):
            wrong.append(f"'{entry}'")
        else:
            hosts.add(name)
    if wrong:
        raise ValueError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not a host name, address or "
                         "CIDR range")
    return AllowList(frozenset(hosts), tuple(networks))


@dataclass(frozen=True)
class NetPolicy:
    allow: AllowList = field(default_factory=AllowList)
    own_hosts: frozenset[str] = frozenset()  # the bot's public host: its feed must not become blackouts
    resolver: Resolver = system_resolver

    @classmethod
    def build(cls, allow: AllowList | None = None, own_urls: Iterable[str | None] = (),
              resolver: Resolver = system_resolver) -> "NetPolicy":
        own = frozenset(_host_key(urlsplit(u).hostname or "") for u in own_urls if u) - {""}
        return cls(allow or AllowList(), own, resolver)

    def check_url(self, url: str) -> tuple[str, int]:
        """Scheme, host and the name-based rules, without DNS: the (host, port) to connect to."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise AddressRefused(BAD_URL) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AddressRefused(BAD_URL)
        host = parts.hostname
        self.check_name(host)
        ip = _literal(host)
        if ip is not None:
            self.check_address(host, ip)
        return host, port or (443 if parts.scheme == "https" else 80)

    def check_name(self, host: str) -> None:
        key = _host_key(host)
        if key in self.own_hosts or (_literal(key) is not None and
                                     any(_literal(h) == _literal(key) for h in self.own_hosts)):
            raise AddressRefused(OWN_FEED)
        if key in METADATA_NAMES:
            raise AddressRefused(NOT_ALLOWED)

    def check_address(self, host: str, ip: IPAddress) -> None:
        candidates = [ip] + ([embedded_ipv4(ip)] if embedded_ipv4(ip) is not None else [])
        if any(c in net for c in candidates for net in self.allow.networks if c.version == net.version):
            return
        if ip in METADATA_ADDRESSES or any(c in METADATA_ADDRESSES for c in candidates):
            raise AddressRefused(NOT_ALLOWED)
        if _host_key(host) in self.allow.hosts:
            return
        if forbidden(ip):
            raise AddressRefused(NOT_ALLOWED)

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for host, every one checked; AddressRefused if any is forbidden
        (a name that also resolves to an internal address is not used at all)."""
        self.check_name(host)
        ip = _literal(host)
        found = [str(ip)] if ip is not None else self.resolver(_host_key(host), port)
        if not found:
            raise Unresolvable(UNRESOLVED)
        for address in found:
            parsed = _literal(address)
            if parsed is None:
                raise AddressRefused(NOT_ALLOWED)
            self.check_address(host, parsed)
        return found

    def check_subscription(self, url: str) -> None:
        """At subscribe time: refuse what the policy refuses. A name that does not resolve now is let
        through; the fetch checks again and says "could not connect"."""
        host, port = self.check_url(url)
        try:
            self.addresses(host, port)
        except Unresolvable:
            pass
