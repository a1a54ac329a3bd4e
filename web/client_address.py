"""The address a request comes from, as the login throttle keys it: the socket peer, or the
X-Forwarded-For hop just before the first trusted proxy when the peer is one (RELAIS_TRUSTED_PROXIES)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from litestar.connection import ASGIConnection

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


@lru_cache(maxsize=8)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """The configured proxies (addresses or CIDR networks, validated by the settings)."""
    return tuple(ip_network(p, strict=False) for p in proxies)


def _parse(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in n for n in networks)


def key_of(address: Address) -> str:
    """IPv4 as is; IPv6 by its /64 (a single host is given a whole /64 and may use any of it)."""
    if isinstance(address, IPv6Address):
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def client_address(connection: ASGIConnection[Any, Any, Any, Any], proxies: tuple[str, ...]) -> str:
    """The client's address key. X-Forwarded-For is believed only when the socket peer is a trusted
    proxy, read right to left, skipping trusted proxies; anything unreadable stops there."""
    peer_raw = connection.client.host if connection.client else ""
    peer = _parse(peer_raw)
    if peer is None:
        return peer_raw or "unknown"
    networks = trusted_networks(proxies)
    if not networks or not _trusted(peer, networks):
        return key_of(peer)
    hops = [h for header in connection.headers.getall("x-forwarded-for", []) for h in header.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, networks):
            break
    return key_of(client)
