"""Socket addresses: one value type for IPv4 and IPv6 peers, and its 32-byte packed form.

Rules this module obeys:

* A :class:`SocketAddress` holds an IP *literal*; nothing here resolves names (no DNS, no
  interface-name lookups), so every function is pure and deterministic.
* IPv6 scope and flow label live in ``scope_id`` and ``flowinfo``, never inside ``host``: two
  addresses are equal exactly when the four fields are equal.
* The packed form (``PACKED_ADDRESS_SIZE`` bytes, used by ``BufferPool.addresses``) mirrors the
  sockaddr fields so a C driver copies them straight across; only the family tag is translated.

Packed layout::

    offset 0  u8   family tag: 0 = no address, 4 = IPv4, 6 = IPv6
    offset 1  u8   reserved, 0
    offset 2  u16  port, big-endian (network order, as in sockaddr)
    offset 4  u32  flowinfo, big-endian (as sin6_flowinfo)
    offset 8  16B  address bytes (IPv4: 4 bytes at offset 8, then 12 zero bytes)
    offset 24 u32  scope_id, little-endian
    offset 28 4B   reserved, 0

Example:
    >>> from horizon_core.addresses import SocketAddress
    >>> addr = SocketAddress.parse("[fe80::1%3]:443")
    >>> addr.scope_id, addr.to_sockaddr()
    (3, ('fe80::1', 443, 0, 3))
"""

from __future__ import annotations

import errno
import ipaddress
import re
import struct
from typing import Any, TypeAlias

import attrs

__all__ = [
    "FAMILY_TAG_NONE",
    "FAMILY_TAG_V4",
    "FAMILY_TAG_V6",
    "IPAddress",
    "PACKED_ADDRESS_SIZE",
    "SocketAddress",
    "SocketAddressLike",
    "as_socket_address",
    "wrong_family_error",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Bytes one packed address occupies in ``BufferPool.addresses``.
PACKED_ADDRESS_SIZE = 32
#: Family tag of a packed slot that holds no address.
FAMILY_TAG_NONE = 0
#: Family tag of a packed IPv4 address.
FAMILY_TAG_V4 = 4
#: Family tag of a packed IPv6 address.
FAMILY_TAG_V6 = 6

_MAX_PORT = 65535
# sin6_flowinfo carries the 20-bit flow label; CPython's socket module refuses larger values.
_MAX_FLOWINFO = 2**20 - 1
_MAX_SCOPE_ID = 2**32 - 1

# Precompiled: these run once per datagram in drivers that decode addresses.
# Bytes 0..23 are in network order (tag, pad, port, flowinfo, 16 address bytes) ...
_HEAD = struct.Struct("!BxHI16s")
# ... then scope_id in little-endian (host order on every platform we ship) and 4 reserved bytes.
_TAIL = struct.Struct("<I4x")
# The IPv4 view of the same bytes: tag, pad, port, flowinfo (ignored), 4 address bytes.
_V4 = struct.Struct("!BxH4x4s")
assert _HEAD.size + _TAIL.size == PACKED_ADDRESS_SIZE

_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_PORT_RE = re.compile(r"[0-9]{1,5}")
_SCOPE_RE = re.compile(r"[0-9]{1,10}")


def _check_int(name: str, value: object, high: int) -> None:
    # bool is an int subclass; True as a port is always a mistake.
    if type(value) is not int:
        raise ValueError(f"{name} must be an int from 0 to {high}, got {value!r}")
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be from 0 to {high}, got {value}")


def _validate_host(instance: object, attribute: attrs.Attribute[IPAddress], value: IPAddress) -> None:
    # Typed as IPAddress for attrs, but checked: callers may pass anything at runtime.
    if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise ValueError(
            f"host must be an ipaddress.IPv4Address or IPv6Address, got {value!r} "
            "(use SocketAddress.parse or as_socket_address for text)"
        )
    if isinstance(value, ipaddress.IPv6Address) and value.scope_id is not None:
        # ipaddress lets a host carry "%scope"; we keep scope in one place so equality is simple.
        raise ValueError(f"host {value!r} carries a scope (%{value.scope_id}); pass scope_id= separately")


def _validate_port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    _check_int("port", value, _MAX_PORT)


def _validate_flowinfo(instance: SocketAddress, attribute: attrs.Attribute[int], value: int) -> None:
    _check_int("flowinfo", value, _MAX_FLOWINFO)
    if value and instance.host.version == 4:
        raise ValueError(f"flowinfo must be 0 for an IPv4 address, got {value}")


def _validate_scope_id(instance: SocketAddress, attribute: attrs.Attribute[int], value: int) -> None:
    _check_int("scope_id", value, _MAX_SCOPE_ID)
    if value and instance.host.version == 4:
        raise ValueError(f"scope_id must be 0 for an IPv4 address, got {value}")


def _host_from_text(text: str) -> tuple[IPAddress, int | None]:
    """Parse an IP literal with an optional numeric ``%scope``; return (host, scope or None)."""
    scope: int | None = None
    original = text
    if "%" in text:
        text, _, scope_text = text.partition("%")
        if not _SCOPE_RE.fullmatch(scope_text) or int(scope_text) > _MAX_SCOPE_ID:
            raise ValueError(
                f"scope must be a numeric interface index from 0 to {_MAX_SCOPE_ID}, "
                f"got {scope_text!r} (interface names are not resolved)"
            )
        scope = int(scope_text)
    try:
        host: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"expected an IP literal such as 127.0.0.1 or ::1, got {text!r} (names are not resolved)"
        ) from None
    if scope is not None and host.version == 4:
        raise ValueError(f"a scope (%{scope}) is only valid on an IPv6 address, got {original!r}")
    return host, scope


def _one_scope(text_scope: int | None, scope_id: int, sockaddr: tuple[Any, ...]) -> int:
    """The scope of a sockaddr whose host may carry ``%scope`` too: they must not disagree."""
    if text_scope is None or text_scope == scope_id or not scope_id:
        return scope_id or (text_scope or 0)
    raise ValueError(
        f"the host's scope %{text_scope} and scope_id {scope_id} disagree in {sockaddr!r}: "
        "give one, or the same in both"
    )


@attrs.frozen(slots=True)
class SocketAddress:
    """An IP literal and port, plus IPv6 flow label and scope.

    Example:
        >>> import ipaddress
        >>> SocketAddress(ipaddress.ip_address("10.0.0.1"), 53)
        SocketAddress(host=IPv4Address('10.0.0.1'), port=53, flowinfo=0, scope_id=0)
        >>> str(SocketAddress.parse("[::1]:8080"))
        '[::1]:8080'
    """

    host: IPAddress = attrs.field(validator=_validate_host)
    port: int = attrs.field(validator=_validate_port)
    flowinfo: int = attrs.field(default=0, validator=_validate_flowinfo)
    scope_id: int = attrs.field(default=0, validator=_validate_scope_id)

    @classmethod
    def _trusted(cls, host: IPAddress, port: int, flowinfo: int = 0, scope_id: int = 0) -> SocketAddress:
        # Skips the validators: used only where every field comes from a fixed-width field that
        # already bounds it (unpack_from), which runs once per received datagram.
        self = object.__new__(cls)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "flowinfo", flowinfo)
        object.__setattr__(self, "scope_id", scope_id)
        return self

    @property
    def family(self) -> int:
        """4 or 6.

        Example:
            >>> SocketAddress.parse("[::1]:1").family
            6
        """
        return self.host.version

    @property
    def is_v4_mapped(self) -> bool:
        """True for ``::ffff:a.b.c.d`` (an IPv4 peer seen through a dual-stack IPv6 socket).

        Example:
            >>> SocketAddress.parse("[::ffff:1.2.3.4]:80").is_v4_mapped
            True
        """
        return self.host.version == 6 and self.host.packed[:12] == _V4_MAPPED_PREFIX

    def unmapped(self) -> SocketAddress:
        """``::ffff:a.b.c.d`` -> ``a.b.c.d`` with the same port; other addresses unchanged.

        Example:
            >>> str(SocketAddress.parse("[::ffff:1.2.3.4]:80").unmapped())
            '1.2.3.4:80'
        """
        if not self.is_v4_mapped:
            return self
        return SocketAddress(ipaddress.IPv4Address(self.host.packed[12:]), self.port)

    def to_v4_mapped(self) -> SocketAddress:
        """``a.b.c.d`` -> ``::ffff:a.b.c.d`` (for sending from a dual-stack socket); IPv6 unchanged.

        Example:
            >>> SocketAddress.parse("1.2.3.4:80").to_v4_mapped().is_v4_mapped
            True
        """
        if self.host.version == 6:
            return self
        return SocketAddress(ipaddress.IPv6Address(_V4_MAPPED_PREFIX + self.host.packed), self.port)

    def to_sockaddr(self) -> tuple[str, int] | tuple[str, int, int, int]:
        """The tuple ``socket.sendto``/``bind`` take: 2-tuple for IPv4, 4-tuple for IPv6.

        Example:
            >>> SocketAddress.parse("[::1]:53").to_sockaddr()
            ('::1', 53, 0, 0)
        """
        if self.host.version == 4:
            return (str(self.host), self.port)
        return (str(self.host), self.port, self.flowinfo, self.scope_id)

    @classmethod
    def from_sockaddr(cls, sockaddr: tuple[Any, ...]) -> SocketAddress:
        """Build from what ``recvfrom``/``getsockname`` return.

        For link-local IPv6, CPython formats the host as ``fe80::1%eth0`` and puts the numeric
        index in the 4th element; the name is dropped and the number kept.

        Example:
            >>> SocketAddress.from_sockaddr(("fe80::1%lo", 9, 0, 1)).scope_id
            1
            >>> str(SocketAddress.from_sockaddr(("127.0.0.1", 9)))
            '127.0.0.1:9'
        """
        if not isinstance(sockaddr, tuple) or len(sockaddr) not in (2, 4):
            raise ValueError(
                f"expected a (host, port) or (host, port, flowinfo, scope_id) tuple, got {sockaddr!r}"
            )
        raw_host = sockaddr[0]
        _check_int("port", sockaddr[1], _MAX_PORT)
        flowinfo = 0
        scope_id = 0
        if len(sockaddr) == 4:
            _check_int("flowinfo", sockaddr[2], _MAX_FLOWINFO)
            _check_int("scope_id", sockaddr[3], _MAX_SCOPE_ID)
            flowinfo, scope_id = sockaddr[2], sockaddr[3]
        host: IPAddress
        if isinstance(raw_host, ipaddress.IPv4Address | ipaddress.IPv6Address):
            host = raw_host
            if isinstance(host, ipaddress.IPv6Address) and host.scope_id is not None:
                host, text_scope = _host_from_text(str(host))
                scope_id = _one_scope(text_scope, scope_id, sockaddr)
        elif isinstance(raw_host, str):
            if raw_host == "":
                # The socket module's spelling of INADDR_ANY.
                host = ipaddress.IPv4Address(0)
            else:
                literal, percent, suffix = raw_host.partition("%")
                if percent and len(sockaddr) == 4 and not _SCOPE_RE.fullmatch(suffix):
                    # An interface name from recvfrom: the 4th element already has its index.
                    host, _ = _host_from_text(literal)
                    if host.version == 4:
                        raise ValueError(f"a scope is only valid on an IPv6 address: {raw_host!r}")
                else:
                    host, text_scope = _host_from_text(raw_host)
                    scope_id = _one_scope(text_scope, scope_id, sockaddr)
        else:
            raise ValueError(f"host must be an IP literal string, got {raw_host!r}")
        if host.version == 4 and (flowinfo or scope_id):
            field = "flowinfo" if flowinfo else "scope_id"
            raise ValueError(f"{field} must be 0 for an IPv4 address, got {sockaddr!r}")
        return cls(host, sockaddr[1], flowinfo, scope_id)

    @classmethod
    def parse(cls, text: str) -> SocketAddress:
        """Parse ``1.2.3.4:80``, ``[::1]:80`` or ``[fe80::1%3]:80`` (numeric scope only).

        ``flowinfo`` has no text form and is 0 in the result.

        Example:
            >>> SocketAddress.parse("[fe80::1%3]:80").scope_id
            3
            >>> SocketAddress.parse("localhost:80")
            Traceback (most recent call last):
            ...
            ValueError: expected an IP literal such as 127.0.0.1 or ::1, got 'localhost' (names are not resolved)
        """  # noqa: E501
        if not isinstance(text, str):
            raise ValueError(f"expected 'host:port' text, got {text!r}")
        if text.startswith("["):
            host_text, bracket, port_text = text[1:].partition("]")
            if not bracket or not port_text.startswith(":"):
                raise ValueError(f"expected '[ipv6]:port', got {text!r}")
            port_text = port_text[1:]
            host, scope = _host_from_text(host_text)
            if host.version == 4:
                raise ValueError(f"brackets are for IPv6 addresses only, got {text!r}")
        else:
            host_text, colon, port_text = text.rpartition(":")
            if not colon:
                raise ValueError(f"expected 'host:port', got {text!r} (the port is missing)")
            if ":" in host_text:
                raise ValueError(f"an IPv6 address needs brackets, as in '[::1]:80'; got {text!r}")
            host, scope = _host_from_text(host_text)
        if not _PORT_RE.fullmatch(port_text) or int(port_text) > _MAX_PORT:
            raise ValueError(f"port must be a number from 0 to {_MAX_PORT}, got {port_text!r}")
        return cls(host, int(port_text), 0, scope or 0)

    def __str__(self) -> str:
        """``1.2.3.4:80``, ``[::1]:80`` or ``[fe80::1%3]:80``; round-trips through :meth:`parse`.

        Example:
            >>> str(SocketAddress.parse("[fe80::1%3]:80"))
            '[fe80::1%3]:80'
        """
        if self.host.version == 4:
            return f"{self.host}:{self.port}"
        if self.scope_id:
            return f"[{self.host}%{self.scope_id}]:{self.port}"
        return f"[{self.host}]:{self.port}"

    def pack_into(self, buf: bytearray | memoryview, offset: int) -> None:
        """Write the 32-byte packed form at ``offset`` (see the module docstring for the layout).

        Example:
            >>> buf = bytearray(32)
            >>> SocketAddress.parse("1.2.3.4:80").pack_into(buf, 0)
            >>> bytes(buf[:12]).hex()
            '040000500000000001020304'
        """
        if self.host.version == 4:
            _HEAD.pack_into(buf, offset, FAMILY_TAG_V4, self.port, 0, self.host.packed)
        else:
            _HEAD.pack_into(buf, offset, FAMILY_TAG_V6, self.port, self.flowinfo, self.host.packed)
        _TAIL.pack_into(buf, offset + 24, self.scope_id)

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int) -> SocketAddress | None:
        """Read a packed address at ``offset``; None when the family tag is 0 (no address).

        Example:
            >>> buf = bytearray(64)
            >>> SocketAddress.parse("[::1]:7").pack_into(buf, 32)
            >>> SocketAddress.unpack_from(buf, 32), SocketAddress.unpack_from(buf, 0)
            (SocketAddress(host=IPv6Address('::1'), port=7, flowinfo=0, scope_id=0), None)
        """
        tag = buf[offset]
        if tag == FAMILY_TAG_NONE:
            return None
        if tag == FAMILY_TAG_V4:
            _, port, raw4 = _V4.unpack_from(buf, offset)
            return cls._trusted(ipaddress.IPv4Address(raw4), port)
        if tag == FAMILY_TAG_V6:
            _, port, flowinfo, raw6 = _HEAD.unpack_from(buf, offset)
            (scope_id,) = _TAIL.unpack_from(buf, offset + 24)
            # Only the low 20 bits are the flow label; anything above could not be sent back.
            return cls._trusted(ipaddress.IPv6Address(raw6), port, flowinfo & _MAX_FLOWINFO, scope_id)
        raise ValueError(
            f"bad packed address at offset {offset}: family tag {tag} "
            f"(expected {FAMILY_TAG_NONE}, {FAMILY_TAG_V4} or {FAMILY_TAG_V6})"
        )


#: What :func:`as_socket_address` accepts.
SocketAddressLike: TypeAlias = SocketAddress | tuple[str, int] | tuple[str, int, int, int] | str


def as_socket_address(value: SocketAddressLike) -> SocketAddress:
    """Normalize what users pass to drivers: a SocketAddress, a sockaddr tuple, or text.

    Raises ValueError naming the bad part. Only IP literals are accepted: nothing is resolved.

    Example:
        >>> str(as_socket_address(("::1", 80)))
        '[::1]:80'
        >>> as_socket_address("example.com:80")
        Traceback (most recent call last):
        ...
        ValueError: expected an IP literal such as 127.0.0.1 or ::1, got 'example.com' (names are not resolved)
    """  # noqa: E501
    if isinstance(value, SocketAddress):
        return value
    if isinstance(value, str):
        return SocketAddress.parse(value)
    if isinstance(value, tuple):
        return SocketAddress.from_sockaddr(value)
    raise ValueError(
        "expected a SocketAddress, a (host, port) tuple or 'host:port' text, "
        f"got {type(value).__name__}: {value!r}"
    )


def wrong_family_error(address: SocketAddress, family: int) -> OSError:
    """The error for a datagram to ``address`` from a socket of the other ``family`` (4 or 6).

    EAFNOSUPPORT, as the kernel says for an IPv6 destination on an IPv4 socket; every driver
    raises this one error (a plain ``socket.sendto`` would raise TypeError instead).

    Example:
        >>> error = wrong_family_error(SocketAddress.parse("[::1]:53"), 4)
        >>> import errno; error.errno == errno.EAFNOSUPPORT
        True
        >>> print(error.strerror)
        cannot send to [::1]:53, an IPv6 address, from an IPv4 (AF_INET) socket
    """
    af = "AF_INET6" if family == 6 else "AF_INET"
    detail = f"cannot send to {address}, an IPv{address.family} address, from an IPv{family} ({af}) socket"
    return OSError(errno.EAFNOSUPPORT, detail)
