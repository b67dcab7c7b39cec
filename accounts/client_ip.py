"""The client's IP address, and the network the per-IP limits count it under."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(address: IPAddress) -> bool:
    return any(address in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


# Counted for requests whose peer address is unknown (no REMOTE_ADDR), so they share one
# budget instead of escaping the per-IP limits.
UNKNOWN_CLIENT = "unknown"
# One IPv6 subscriber usually holds a whole /64, so its addresses count as one client.
IPV6_CLIENT_PREFIX = 64


def _parse(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


def client_ip(request: HttpRequest) -> str | None:
    """The TCP peer, unless it is a trusted proxy (`TRUSTED_PROXIES`, addresses or networks).

    Behind trusted proxies, `X-Forwarded-For` is read from the right: each proxy appends the
    address it received the request from, so the right-most address that is not one of our
    proxies is the client. Anything to its left was written by the client and is ignored.
    An entry that is not an IP address stops the walk at the last proxy that wrote it.
    """
    peer = _parse(request.META.get("REMOTE_ADDR") or "")
    if peer is None or not _is_trusted(peer):
        return str(peer) if peer is not None else None
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop for hop in forwarded.split(",") if hop.strip()]
    nearest = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break
        if not _is_trusted(address):
            return str(address)
        nearest = address
    return str(nearest)


def client_network(ip: str | None) -> IPNetwork | None:
    """The network a per-IP limit counts `ip` under: the address itself for IPv4, its /64
    for IPv6, None for an unknown client (see UNKNOWN_CLIENT)."""
    address = _parse(ip) if ip is not None else None
    if address is None:
        return None
    prefix = IPV6_CLIENT_PREFIX if address.version == 6 else address.max_prefixlen
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def client_network_key(ip: str | None) -> str:
    """`client_network` as a string key: "198.51.100.7/32", "2001:db8:1:2::/64", "unknown"."""
    network = client_network(ip)
    return str(network) if network is not None else UNKNOWN_CLIENT
