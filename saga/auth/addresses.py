"""Who a sign-in comes from: the socket's peer, or what trusted proxies say it is."""

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Networks = Sequence[IPv4Network | IPv6Network]


def client_address(peer: str | None, forwarded_for: str | None, trusted: Networks) -> str:
    """The peer, unless it is a trusted proxy: then the nearest hop of X-Forwarded-For
    that is not one (each proxy appends who it heard from, so only the hops a trusted
    proxy wrote are believed; a hop that is not an address ends the walk)."""
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    client = peer or "unknown"
    for hop in [client, *reversed(hops)]:
        address = _address(hop)
        if address is None:
            return client
        client = str(address)
        if not any(address in network for network in trusted):
            return client
    return client


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None
