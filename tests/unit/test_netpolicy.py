"""calendars.netpolicy: which addresses a subscribed calendar may be fetched from. No real DNS: resolvers are injected."""
from __future__ import annotations

import ipaddress

import pytest

from calendars.netpolicy import (NOT_ALLOWED, OWN_FEED, AddressRefused, NetPolicy, Unresolvable, forbidden,
                                 parse_allow)


@pytest.mark.parametrize("address", [
    "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.1.1", "127.0.0.1", "127.1.2.3",
    "169.254.169.254", "169.254.1.1", "0.0.0.0", "100.64.0.1", "100.127.255.254", "100.100.100.200",
    "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1", "192.0.0.192",
    "168.63.129.16",
    "::1", "::", "fd00::1", "fd00:ec2::254", "fc00::1", "fe80::1", "ff02::1", "ff05::2",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.0.1",
    "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001:db8::1", "::127.0.0.1",
])
def test_internal_and_special_addresses_are_forbidden(address):
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1",
                                     "2606:4700:4700::1111", "::ffff:8.8.8.8", "2a00:1450:4009:80b::200e"])
def test_public_addresses_are_allowed(address):
    assert not forbidden(ipaddress.ip_address(address))


def resolving(table: dict[str, list[str]]):
    seen = []

    def resolve(host, port):
        seen.append(host)
        if host not in table:
            raise Unresolvable("could not connect")
        return table[host]
    resolve.seen = seen
    return resolve


def test_a_name_resolving_to_an_internal_address_is_refused_and_a_public_one_kept():
    policy = NetPolicy.build(resolver=resolving({"cal.example.com": ["93.184.216.34"],
                                                 "evil.example.com": ["93.184.216.34", "10.0.0.5"],
                                                 "rebind.example.com": ["::ffff:127.0.0.1"]}))
    assert policy.addresses("cal.example.com", 443) == ["93.184.216.34"]
    for host in ("evil.example.com", "rebind.example.com"):
        with pytest.raises(AddressRefused, match=NOT_ALLOWED):
            policy.addresses(host, 443)


@pytest.mark.parametrize("url", ["http://127.0.0.1:5432/", "http://[::1]:1/x", "http://169.254.169.254/latest/",
                                 "http://0.0.0.0:8080/", "http://[::ffff:127.0.0.1]/", "http://10.1.2.3/c.ics",
                                 "http://metadata.google.internal/computeMetadata/v1/"])
def test_literal_internal_addresses_are_refused_without_dns(url):
    resolver = resolving({})
    with pytest.raises(AddressRefused, match="refused by policy"):
        NetPolicy.build(resolver=resolver).check_url(url)
    assert resolver.seen == []


def test_the_allow_list_admits_names_addresses_and_ranges():
    allow = parse_allow(" calendar.corp.example , 127.0.0.1,10.30.0.0/16, fd12::/64,")
    assert allow.hosts == {"calendar.corp.example"}
    policy = NetPolicy.build(allow, resolver=resolving({"calendar.corp.example": ["10.9.9.9"],
                                                        "other.corp.example": ["10.9.9.9"]}))
    assert policy.addresses("calendar.corp.example", 443) == ["10.9.9.9"]
    assert policy.addresses("127.0.0.1", 80) == ["127.0.0.1"]
    assert policy.addresses("10.30.4.5", 80) == ["10.30.4.5"]
    assert policy.addresses("fd12::7", 80) == ["fd12::7"]
    for host in ("other.corp.example", "127.0.0.2", "10.31.0.1", "169.254.169.254"):
        with pytest.raises(AddressRefused):
            policy.addresses(host, 80)


def test_a_wide_allowed_name_still_does_not_reach_cloud_metadata():
    policy = NetPolicy.build(parse_allow("calendar.corp.example"),
                             resolver=resolving({"calendar.corp.example": ["169.254.169.254"]}))
    with pytest.raises(AddressRefused):
        policy.addresses("calendar.corp.example", 80)


@pytest.mark.parametrize("text", ["10.0.0.0/33", "not a host", "calendar.example/ics", "a..b", "https://x.example"])
def test_a_malformed_allow_list_names_the_entry(text):
    with pytest.raises(ValueError, match="not a host name, address or CIDR range"):
        parse_allow(f"ok.example,{text}")


def test_the_bots_own_public_host_is_refused_even_when_allowed():
    policy = NetPolicy.build(parse_allow("releases.example.com"), own_urls=["https://Releases.Example.com/"],
                             resolver=resolving({"releases.example.com": ["93.184.216.34"]}))
    with pytest.raises(AddressRefused, match=OWN_FEED):
        policy.check_url("https://releases.example.com./calendar.ics?token=x")


def test_subscription_check_lets_an_unresolvable_name_through_but_not_a_forbidden_one():
    policy = NetPolicy.build(resolver=resolving({"internal.example.com": ["192.168.0.10"]}))
    policy.check_subscription("https://nowhere.example.com/c.ics")  # checked again when fetched
    with pytest.raises(AddressRefused, match=NOT_ALLOWED):
        policy.check_subscription("https://internal.example.com/c.ics")
    with pytest.raises(AddressRefused, match="not an http"):
        policy.check_subscription("ftp://internal.example.com/c.ics")


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "localhost"])
def test_odd_spellings_of_loopback_are_judged_by_what_they_resolve_to(host):
    # getaddrinfo reads these numeric forms and /etc/hosts itself (no DNS); the check is on its answer
    with pytest.raises(AddressRefused, match=NOT_ALLOWED):
        NetPolicy.build().addresses(host, 80)
