"""The client's IP address, for the per-IP OTP send limit."""

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


def _parse(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


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
