"""The SSRF guard's classifier and policy (pure). Non-loopback addresses are only ever classified
here, never connected to."""

from __future__ import annotations

import ipaddress

import pytest

from miniport.domain.address_guard import AddressClass, AddressPolicy, classify

A = AddressClass


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        # IPv4 private ranges (RFC 1918) and shared CGNAT space (RFC 6598)
        ("10.0.0.1", A.PRIVATE),
        ("10.255.255.255", A.PRIVATE),
        ("172.16.0.1", A.PRIVATE),
        ("172.31.255.254", A.PRIVATE),
        ("192.168.1.1", A.PRIVATE),
        ("100.64.0.1", A.PRIVATE),
        ("100.127.255.254", A.PRIVATE),
        # loopback
        ("127.0.0.1", A.LOOPBACK),
        ("127.8.9.10", A.LOOPBACK),
        ("::1", A.LOOPBACK),
        # link-local
        ("169.254.1.1", A.LINK_LOCAL),
        ("fe80::1", A.LINK_LOCAL),
        ("fe80::1%eth0", A.LINK_LOCAL),
        # multicast
        ("224.0.0.1", A.MULTICAST),
        ("239.255.255.250", A.MULTICAST),
        ("ff02::1", A.MULTICAST),
        ("ff0e::1", A.MULTICAST),
        # cloud metadata, named apart from link-local
        ("169.254.169.254", A.METADATA),
        ("169.254.170.2", A.METADATA),
        ("fd00:ec2::254", A.METADATA),
        ("100.100.100.200", A.METADATA),
        # unspecified
        ("0.0.0.0", A.UNSPECIFIED),
        ("::", A.UNSPECIFIED),
        # IPv6 unique-local and (deprecated) site-local
        ("fc00::1", A.PRIVATE),
        ("fd12:3456::1", A.PRIVATE),
        ("fec0::1", A.PRIVATE),
        # IPv4-mapped IPv6: judged by the IPv4 address inside
        ("::ffff:10.0.0.1", A.PRIVATE),
        ("::ffff:127.0.0.1", A.LOOPBACK),
        ("::ffff:169.254.169.254", A.METADATA),
        ("::ffff:169.254.1.1", A.LINK_LOCAL),
        ("::ffff:0.0.0.0", A.UNSPECIFIED),
        ("::ffff:8.8.8.8", A.PUBLIC),
        # 6to4 (2002::/16) carries an IPv4 address in bits 16..48
        ("2002:0a00:0001::1", A.PRIVATE),
        ("2002:7f00:0001::1", A.RESERVED),  # only real loopback is loopback
        ("2002:a9fe:a9fe::1", A.METADATA),
        ("2002:0808:0808::1", A.PUBLIC),
        # NAT64 well-known prefix (64:ff9b::/96) carries an IPv4 address in its last 32 bits
        ("64:ff9b::a00:1", A.PRIVATE),
        ("64:ff9b::7f00:1", A.RESERVED),
        ("64:ff9b::a9fe:a9fe", A.METADATA),
        ("64:ff9b::808:808", A.PUBLIC),
        # public
        ("8.8.8.8", A.PUBLIC),
        ("1.1.1.1", A.PUBLIC),
        ("2606:4700:4700::1111", A.PUBLIC),
        ("2001:4860:4860::8888", A.PUBLIC),
    ],
)
def test_classify(address: str, expected: AddressClass) -> None:
    assert classify(address) is expected
    assert classify(ipaddress.ip_address(address)) is expected


@pytest.mark.parametrize(
    "address",
    ["192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "240.0.0.1",
     "255.255.255.255", "2001:db8::1", "::127.0.0.1", "64:ff9b:1::a00:1", "100::1"],
)
def test_documentation_benchmark_and_reserved_ranges_are_never_public(address: str) -> None:
    assert classify(address) is not A.PUBLIC
    assert not AddressPolicy().permits(address)


NOT_PUBLIC = ["10.0.0.1", "172.16.5.4", "192.168.0.10", "100.64.1.1", "127.0.0.1", "::1",
              "169.254.1.1", "fe80::1", "224.0.0.1", "ff02::1", "169.254.169.254",
              "fd00:ec2::254", "0.0.0.0", "::", "fc00::1", "::ffff:10.0.0.1",
              "::ffff:127.0.0.1", "2002:0a00:0001::1", "64:ff9b::a00:1"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_production_policy_refuses_every_non_public_address(address: str) -> None:
    policy = AddressPolicy.build(dev=False)
    assert not policy.permits(address)
    assert classify(address).value in policy.reason(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_production_policy_permits_public_addresses(address: str) -> None:
    assert AddressPolicy.build(dev=False).permits(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_dev_policy_permits_loopback(address: str) -> None:
    assert AddressPolicy.build(dev=True).permits(address)


@pytest.mark.parametrize("address", ["2002:7f00:1::", "2002:7f00:0001::1", "64:ff9b::7f00:1",
                                     "64:ff9b::7f00:0001", "2002:7f01:0203::"])
def test_dev_policy_refuses_tunnel_addresses_that_embed_127(address: str) -> None:
    """6to4 and NAT64 addresses go out through a relay or translator, not to this host: only
    real loopback (127/8, ::1 and its IPv4-mapped form) is loopback."""
    assert classify(address) is not AddressClass.LOOPBACK
    assert not AddressPolicy.build(dev=True).permits(address)


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.1", "fd12::1", "100.64.0.1"])
def test_dev_policy_does_not_open_private_networks(address: str) -> None:
    assert not AddressPolicy.build(dev=True).permits(address)
    assert AddressPolicy.build(dev=False, allow=(address,)).permits(address)


def test_metadata_is_refused_even_for_an_allow_listed_name() -> None:
    policy = AddressPolicy.build(dev=True, allow=("internal.example",))
    assert policy.refuses_always("169.254.169.254") and policy.refuses_always("fd00:ec2::254")
    assert not policy.refuses_always("127.0.0.1")
    assert not AddressPolicy.build(dev=False, allow=("169.254.169.254/32",)).refuses_always(
        "169.254.169.254")


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.1", "0177.0.0.1", "127.0.0.1.",
                                  "１２７.0.0.1", "0x7f000001"])
def test_numeric_hosts_in_any_form_look_like_ipv4(host: str) -> None:
    from miniport.domain.address_guard import looks_like_ipv4

    assert looks_like_ipv4(host)


@pytest.mark.parametrize("host", ["cafe.be", "example.com", "1.example", "localhost", "x"])
def test_names_do_not_look_like_ipv4(host: str) -> None:
    from miniport.domain.address_guard import looks_like_ipv4

    assert not looks_like_ipv4(host)


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "169.254.1.1",
                                     "fe80::1", "224.0.0.1", "ff02::1", "0.0.0.0", "::",
                                     "::ffff:169.254.169.254"])
def test_dev_policy_still_refuses_metadata_link_local_multicast_unspecified(address: str) -> None:
    assert not AddressPolicy.build(dev=True).permits(address)


def test_allow_list_permits_exactly_the_listed_networks() -> None:
    policy = AddressPolicy.build(dev=False, allow=("10.1.0.0/16", "fd00:1::/64", "127.0.0.1"))
    assert policy.permits("10.1.2.3")
    assert policy.permits("fd00:1::5")
    assert policy.permits("127.0.0.1")
    assert not policy.permits("10.2.0.1")
    assert not policy.permits("127.0.0.2")
    assert not policy.permits("::1")
    assert not policy.permits("fd00:2::5")
    assert not policy.permits("169.254.169.254")


def test_allow_list_can_open_a_metadata_address_explicitly() -> None:
    assert AddressPolicy.build(dev=False, allow=("169.254.169.254/32",)).permits("169.254.169.254")


def test_allow_list_applies_to_the_ipv4_inside_a_mapped_address() -> None:
    policy = AddressPolicy.build(dev=False, allow=("10.1.0.0/16",))
    assert policy.permits("::ffff:10.1.2.3")
    assert not policy.permits("::ffff:10.2.0.1")


def test_allow_list_host_names_are_not_networks() -> None:
    policy = AddressPolicy.build(dev=False, allow=("internal.example", "10.0.0.0/8"))
    assert policy.allow == (ipaddress.ip_network("10.0.0.0/8"),)
