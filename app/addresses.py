"""The SSRF guard: which delivery URLs hookstream may POST to (SPEC §8).

A URL passes when its scheme is allowed (`https`, plus `http` with
HOOKSTREAM_ALLOW_HTTP) and every address its host resolves to is a public
unicast address. The host is resolved with the system resolver, so every way of
writing an address the resolver accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`,
`[::ffff:127.0.0.1]`) is judged by the address it means, not by its spelling.

The check runs at create/update and again before every delivery, because a name
can resolve elsewhere later (DNS rebinding). The delivery then connects to the
address that was vetted, not to a second resolution of the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0

# Not covered by `is_global` on every Python version, or worth naming on their own.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "100.64.0.0/10",  # carrier-grade NAT
        "169.254.0.0/16",  # link-local, where cloud metadata lives (169.254.169.254)
        "192.0.0.0/24",
        "198.18.0.0/15",
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "64:ff9b::/96",  # NAT64: embeds an IPv4 address, checked below
    )
)


class UnsafeUrl(ValueError):
    """The URL's scheme or address is not one hookstream will deliver to."""


@dataclass(frozen=True, slots=True)
class Target:
    """A vetted delivery URL: its parts and the addresses it may be sent to."""

    url: str
    parts: SplitResult
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def refused_reason(address: IPAddress) -> str | None:
    """Why this address may not receive deliveries, or None when it is public unicast."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            reason = refused_reason(embedded)
            if reason is not None:
                return f"{reason} (inside the IPv6 address {address})"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local or metadata address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
    )
    for refused, reason in checks:
        if refused:
            return reason
    if any(address in network for network in _BLOCKED_NETWORKS if network.version == address.version):
        return "a non-public address"
    if not address.is_global:
        return "a non-public address"
    return None


def checked_scheme(url: str, *, allow_http: bool) -> SplitResult:
    """The URL's parts when it is an absolute URL with an allowed scheme and a host; UnsafeUrl otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise UnsafeUrl(f"url {url!r} is not a valid URL.") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        raise UnsafeUrl(f"url must be an absolute {allowed} URL.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("url must not carry a user name or password.")
    return parts


async def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """Every address `host` resolves to, literal addresses in any spelling included; UnsafeUrl when none."""
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        # The resolver blocks; asyncio runs it in its thread pool, and a dead resolver must not hold a request.
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise UnsafeUrl(f"url host {host!r} did not resolve within {RESOLVE_TIMEOUT:g}s.") from None
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"url host {host!r} does not resolve: {exc}.") from None
    addresses: list[IPAddress] = []
    for info in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"); the address alone decides.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrl(f"url host {host!r} does not resolve.")
    return tuple(addresses)


async def vetted_target(url: str, *, allow_http: bool, allow_private: bool) -> Target:
    """The URL with the addresses it may be delivered to; UnsafeUrl when the policy refuses it."""
    parts = checked_scheme(url, allow_http=allow_http)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not allow_private:
        for address in addresses:
            # One bad record refuses the name: a resolver may hand out any of them next time.
            reason = refused_reason(address)
            if reason is not None:
                shown = host if host == str(address) else f"{host} ({address})"
                raise UnsafeUrl(
                    f"url host {shown} is {reason}; deliveries go only to public addresses"
                    " (HOOKSTREAM_ALLOW_PRIVATE_URLS=1 lifts this for development)."
                )
    return Target(url=url, parts=parts, host=host, port=port, addresses=addresses)
