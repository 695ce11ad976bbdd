"""Host names to socket addresses for the anyio driver, the way anyio resolves them.

Rules this module obeys:

* IP literals (``"127.0.0.1"``, ``"::1"``, ``"fe80::1%3"``, ``"fe80::1%lo"``, ``IPv4Address``...)
  never reach DNS: they are parsed in place (an interface name becomes its index through
  ``if_nametoindex``, an ioctl, not a lookup), so the common case costs no thread and no await
  beyond a checkpoint.
* Names go through :func:`anyio.getaddrinfo` (a worker thread on asyncio, trio's resolver on trio)
  and never block the event loop.
* The core stays resolver-free: what leaves this module is a
  :class:`~horizon_core.addresses.SocketAddress` of IP literals, which the shared opening
  plumbing accepts.

Example::

    addresses = await resolve("localhost", 8080, socket.SOCK_STREAM)
    # [SocketAddress(host=IPv6Address('::1'), port=8080, ...), SocketAddress(IPv4Address(...))]
"""

from __future__ import annotations

import ipaddress
import socket

import anyio

from horizon_core.addresses import IPAddress, SocketAddress

__all__ = [
    "AnyIPAddressFamily",
    "IPAddressType",
    "Resolved",
    "address_of",
    "ip_literal",
    "lookup",
    "resolve",
    "wildcard",
]

#: What anyio accepts as a host: text or an ipaddress object.
IPAddressType = str | ipaddress.IPv4Address | ipaddress.IPv6Address
#: What anyio accepts as a family.
AnyIPAddressFamily = socket.AddressFamily


def ip_literal(host: IPAddressType) -> tuple[IPAddress, int] | None:
    """Parse an IP literal (with an optional ``%scope``: index or interface name); None for a name.

    Example:
        >>> ip_literal("fe80::1%3")
        (IPv6Address('fe80::1'), 3)
        >>> ip_literal("fe80::1%lo") == (ipaddress.IPv6Address("fe80::1"), socket.if_nametoindex("lo"))
        True
        >>> ip_literal("localhost") is None
        True
    """
    if isinstance(host, ipaddress.IPv4Address):
        return host, 0
    if isinstance(host, ipaddress.IPv6Address):
        index = _scope_index(host.scope_id or "0")
        return None if index is None else (ipaddress.IPv6Address(host.packed), index)
    text, percent, scope = str(host).partition("%")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if not percent:
        return address, 0
    if address.version == 4:
        return None
    index = _scope_index(scope)
    # An unknown interface name is left to the resolver, whose error names it as anyio's would.
    return None if index is None else (address, index)


def _scope_index(scope: str) -> int | None:
    if scope.isdigit():
        return int(scope)
    try:
        return socket.if_nametoindex(scope)
    except OSError:
        return None


def _family_matches(family: int, version: int) -> bool:
    return (
        family == socket.AF_UNSPEC
        or (family == socket.AF_INET and version == 4)
        or (family == socket.AF_INET6 and version == 6)
    )


def wildcard(family: int, port: int) -> SocketAddress:
    """The any-address of ``family`` (IPv4 unless AF_INET6) with ``port``.

    Example:
        >>> str(wildcard(socket.AF_INET6, 53))
        '[::]:53'
    """
    host: IPAddress = ipaddress.IPv6Address(0) if family == socket.AF_INET6 else ipaddress.IPv4Address(0)
    return SocketAddress(host, port)


#: One getaddrinfo answer as the factories use it: family, socket type, address.
Resolved = tuple[socket.AddressFamily, socket.SocketKind, SocketAddress]


def address_of(sockaddr: tuple[str, int]) -> SocketAddress:
    """An answer of :func:`anyio.getaddrinfo` (IPv6 as ``("host%scope", port)``) as SocketAddress.

    Example:
        >>> str(address_of(("fe80::1%2", 80)))
        '[fe80::1%2]:80'
    """
    literal = ip_literal(sockaddr[0])
    if literal is None:
        raise OSError(f"getaddrinfo returned a non-IP address {sockaddr[0]!r}")
    address, scope = literal
    return SocketAddress(address, sockaddr[1], 0, scope)


async def lookup(
    host: IPAddressType,
    port: int | None,
    *,
    family: int = socket.AF_UNSPEC,
    kind: int = 0,
    flags: int = 0,
) -> list[Resolved]:
    """:func:`anyio.getaddrinfo` as anyio's factories call it, answers as SocketAddress.

    Same order, same repeats and same errors as anyio (``socket.gaierror`` for an unknown
    name or a literal of the wrong family); an IP literal that fits ``family`` is answered in
    place, without a worker thread (one answer per socket type asked for).

    Example::

        [(f.name, str(a)) for f, _, a in await lookup("::1", 80, kind=socket.SOCK_STREAM)]
        # [('AF_INET6', '[::1]:80')]
    """
    literal = ip_literal(host)
    if literal is not None and kind != 0:
        address, scope = literal
        af = socket.AF_INET if address.version == 4 else socket.AF_INET6
        if family in (socket.AF_UNSPEC, af):
            await anyio.lowlevel.checkpoint()
            return [(af, socket.SocketKind(kind), SocketAddress(address, port or 0, 0, scope))]
    infos = await anyio.getaddrinfo(str(host), port, family=family, type=kind, flags=flags)
    return [
        (af, socket.SocketKind(sock_type), address_of(sockaddr))
        for af, sock_type, _proto, _canonname, sockaddr in infos
        if af in (socket.AF_INET, socket.AF_INET6)
    ]


async def resolve(
    host: IPAddressType,
    port: int,
    kind: socket.SocketKind,
    *,
    family: int = socket.AF_UNSPEC,
    passive: bool = False,
) -> list[SocketAddress]:
    """Every address of ``host`` for ``kind`` and ``family``, in resolver order, without repeats.

    Raises ``socket.gaierror`` for an unknown name and ``OSError`` when a literal does not match
    ``family``.

    Example::

        [str(a) for a in await resolve("127.0.0.1", 53, socket.SOCK_DGRAM)]   # ['127.0.0.1:53']
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port!r}")
    literal = ip_literal(host)
    if literal is not None:
        address, scope = literal
        if not _family_matches(family, address.version):
            raise OSError(f"{host} is not an address of family {socket.AddressFamily(family).name}")
        await anyio.lowlevel.checkpoint()
        return [SocketAddress(address, port, 0, scope)]
    flags = socket.AI_ADDRCONFIG | (socket.AI_PASSIVE if passive else 0)
    infos = await anyio.getaddrinfo(str(host), port, family=family, type=kind, flags=flags)
    seen: set[SocketAddress] = set()
    result: list[SocketAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        if _family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address_obj = SocketAddress.from_sockaddr(tuple(sockaddr))
        if address_obj not in seen:
            seen.add(address_obj)
            result.append(address_obj)
    if not result:
        raise OSError(f"{host!r} has no IPv4 or IPv6 address")
    return result
