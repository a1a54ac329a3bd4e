"""Who may call the DICOM node: a directory node is admitted by its calling AE title *and* the address
its association comes from (its host, its calling addresses or networks), unless it is « adresse non
vérifiée ». Host names are resolved when the directory is read, never while a peer waits."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from projections.directory import NodePeer

log = logging.getLogger("relais.dicom")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_of(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a socket's peer; an IPv4-mapped IPv6 address as the IPv4 one; None if not one."""
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def resolve(entry: str) -> list[Network]:
    """The networks an address entry stands for: itself (an IP address or a CIDR network), or the
    addresses a host name resolves to (none, with a warning, if it does not resolve)."""
    try:
        return [ipaddress.ip_network(entry, strict=False)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(entry, None, proto=socket.IPPROTO_TCP)
    except OSError as e:
        log.warning("nœud DICOM : le nom « %s » ne se résout pas (%s), aucun appel admis depuis ce nom", entry, e)
        return []
    out: list[Network] = []
    for *_, sockaddr in infos:
        ip = ip_of(str(sockaddr[0]))
        if ip is not None and ipaddress.ip_network(ip) not in out:
            out.append(ipaddress.ip_network(ip))
    return out


@dataclass(frozen=True)
class Caller:
    """A directory node as the SCP admits it."""

    establishment_id: str
    addresses: tuple[str, ...]  # as the directory has them (for the log)
    networks: tuple[Network, ...]  # what they stand for now
    unverified: bool = False

    def admits(self, address: str) -> bool:
        """True if an association from `address` may be this node's."""
        if self.unverified:
            return True
        ip = ip_of(address)
        return ip is not None and any(ip in network for network in self.networks)


def callers(
    known: set[str] | Mapping[str, str] | Mapping[str, NodePeer], resolver: Callable[[str], list[Network]] = resolve,
) -> dict[str, Caller]:
    """The callers of the directory's nodes. Bare AE titles (a set, or AE title -> establishment id)
    carry no address: they are admitted from anywhere (the protocol tests' nodes)."""
    out: dict[str, Caller] = {}
    for aet in known:
        peer = known[aet] if isinstance(known, Mapping) else ""
        if isinstance(peer, NodePeer):
            networks = tuple(n for entry in peer.addresses for n in resolver(entry))
            out[aet] = Caller(peer.establishment_id, peer.addresses, networks, peer.unverified)
        else:
            out[aet] = Caller(str(peer), (), (), unverified=True)
    return out
