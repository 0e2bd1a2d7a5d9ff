"""Server-side request forgery guard: which resolved addresses the fetcher may connect to.

Pure: it classifies an IP address and decides against a policy. The fetch client applies it to the
resolved address of every connection, redirects included."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressClass(StrEnum):
    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    METADATA = "metadata"
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"
    RESERVED = "reserved"


# Cloud metadata services. 169.254.169.254 is also link-local; it is named apart so the log says
# what was attempted. fd00:ec2::254 is AWS's IPv6 metadata address; 100.100.100.200 Alibaba's.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}
_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def ip_in(address: str | IPAddress, net: IPNetwork) -> bool:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    return ip.version == net.version and ip in net


def looks_like_ipv4(host: str) -> bool:
    """A host made only of numbers and dots (decimal, octal, hex, any digits): what resolvers
    read as an IPv4 address however it is written (127.1, 2130706433, 0x7f.1, 127.0.0.1.)."""
    labels = host.rstrip(".").split(".")
    return bool(labels) and all(
        label and (label.isdigit() or (label[:2].lower() == "0x" and label[2:].isalnum()))
        for label in labels
    )


def classify(address: str | IPAddress) -> AddressClass:
    """Classify one IP address. IPv4-mapped and 6to4/NAT64-embedded IPv4 are judged by the IPv4
    address they carry, except that only real loopback is loopback: a 6to4 or NAT64 address
    carrying 127.x goes to a relay or translator, not to this host, and is reserved."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return classify(ip.ipv4_mapped)
        embedded = ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            kind = classify(embedded)
            return AddressClass.RESERVED if kind is AddressClass.LOOPBACK else kind
    if ip in _METADATA:
        return AddressClass.METADATA
    if ip.is_unspecified:
        return AddressClass.UNSPECIFIED
    if ip.is_loopback:
        return AddressClass.LOOPBACK
    if ip.is_link_local:
        return AddressClass.LINK_LOCAL
    if ip.is_multicast:
        return AddressClass.MULTICAST
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_CGNAT:
        return AddressClass.PRIVATE
    if ip.is_private:
        return AddressClass.PRIVATE
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return AddressClass.PRIVATE  # fec0::/10: deprecated, but still routed inside sites
    if ip.is_reserved or not ip.is_global:
        return AddressClass.RESERVED
    return AddressClass.PUBLIC


@dataclass(frozen=True)
class AddressPolicy:
    """What the fetcher may connect to. ``allow_loopback`` is development mode; ``allow`` holds
    networks an operator allow-listed (a developer server on the private network, say)."""

    allow_loopback: bool = False
    allow_private: bool = False
    allow: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, *, dev: bool, allow: tuple[str, ...] = ()) -> AddressPolicy:
        networks = []
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue  # host names are handled by allowed_host_names()
        # development mode opens loopback only; a private network takes an explicit allow-list
        return cls(allow_loopback=dev, allow_private=False, allow=tuple(networks))

    def permits(self, address: str | IPAddress) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # the same host as its IPv4 address, allow-list included
        if any(ip.version == net.version and ip in net for net in self.allow):
            return True
        kind = classify(ip)
        if kind is AddressClass.PUBLIC:
            return True
        if kind is AddressClass.LOOPBACK:
            return self.allow_loopback
        if kind is AddressClass.PRIVATE:
            return self.allow_private
        # metadata, link-local, multicast, unspecified, reserved: only by explicit allow-list
        return False

    def refuses_always(self, address: str | IPAddress) -> bool:
        """Metadata services stay refused even for an allow-listed host name."""
        return classify(address) is AddressClass.METADATA and not any(
            ip_in(address, net) for net in self.allow)

    def reason(self, address: str | IPAddress) -> str:
        return f"address {address} is {classify(address).value} and not allowed"
