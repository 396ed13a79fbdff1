"""SSRF guard: a webhook may only reach public addresses, unless its host or network is allow-listed.

The URL's host is resolved and EVERY address checked (a name with one private address is refused);
the request is then sent to the checked address (pinned), so a DNS answer that changes between the
check and the connect (rebinding) cannot redirect it to Redis or a metadata endpoint.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Awaitable[list[str]]]


class WebhookTargetRefused(ValueError):
    """The target is not allowed (scheme, private/loopback/link-local address...)."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str
    port: int
    address: str  # the checked IP the request is sent to


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def _allowed_networks(allow: Iterable[str]) -> tuple[set[str], list[ipaddress._BaseNetwork]]:
    names, nets = set(), []
    for item in allow:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item.lower())
    return names, nets


def _public(ip: ipaddress._BaseAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified)


async def check_target(url: str, allow: Iterable[str] = (), resolver: Resolver = resolve) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetRefused("webhook URLs must be http(s)://host/...")
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    names, nets = _allowed_networks(allow)
    try:
        addresses = [host] if _is_ip(host) else await resolver(host, port)
    except OSError as exc:
        raise WebhookTargetRefused(f"cannot resolve {host}") from exc
    if not addresses:
        raise WebhookTargetRefused(f"cannot resolve {host}")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if host in names or any(ip in net for net in nets):
            continue
        if not _public(ip):
            raise WebhookTargetRefused(f"webhook target {host} resolves to a non-public address ({ip}); "
                                       "allow-list it in policy.webhooks.allow_hosts if intended")
    return Target(url, host, port, addresses[0])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
