"""SocketAddress: validation, text and sockaddr round-trips, the packed layout, v4-mapping."""

from __future__ import annotations

import ipaddress
import socket
import struct

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horizon_core.addresses import (
    FAMILY_TAG_NONE,
    FAMILY_TAG_V4,
    FAMILY_TAG_V6,
    PACKED_ADDRESS_SIZE,
    SocketAddress,
    as_socket_address,
)

ports = st.integers(0, 65535)
v4_addresses = st.builds(SocketAddress, st.ip_addresses(v=4), ports)
v6_addresses = st.builds(
    SocketAddress,
    st.ip_addresses(v=6),
    ports,
    st.integers(0, 2**20 - 1),
    st.integers(0, 2**32 - 1),
)
addresses = st.one_of(v4_addresses, v6_addresses)


# -- round-trips -------------------------------------------------------------------------


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(addresses)
def test_str_parse_round_trip(addr: SocketAddress) -> None:
    # flowinfo has no text form, so text keeps everything else.
    assert SocketAddress.parse(str(addr)) == attrs.evolve(addr, flowinfo=0)


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(addresses)
def test_as_socket_address_accepts_every_form(addr: SocketAddress) -> None:
    assert as_socket_address(addr) is addr
    assert as_socket_address(addr.to_sockaddr()) == addr
    assert as_socket_address(str(addr)) == attrs.evolve(addr, flowinfo=0)


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(addresses)
def test_sockaddr_round_trip(addr: SocketAddress) -> None:
    sockaddr = addr.to_sockaddr()
    assert len(sockaddr) == (2 if addr.family == 4 else 4)
    assert SocketAddress.from_sockaddr(sockaddr) == addr


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(addresses, st.integers(0, 4))
def test_pack_unpack_round_trip(addr: SocketAddress, slot: int) -> None:
    buf = bytearray(b"\xaa" * (PACKED_ADDRESS_SIZE * 5))
    offset = slot * PACKED_ADDRESS_SIZE
    addr.pack_into(buf, offset)
    assert SocketAddress.unpack_from(buf, offset) == addr
    assert SocketAddress.unpack_from(bytes(buf), offset) == addr
    # Neighbouring records are untouched.
    assert buf[:offset] == b"\xaa" * offset
    assert buf[offset + PACKED_ADDRESS_SIZE :] == b"\xaa" * (len(buf) - offset - 32)


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(addresses)
def test_pack_into_memoryview(addr: SocketAddress) -> None:
    buf = bytearray(64)
    addr.pack_into(memoryview(buf), 32)
    assert SocketAddress.unpack_from(memoryview(buf), 32) == addr


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(addresses)
def test_packed_layout_matches_sockaddr_fields(addr: SocketAddress) -> None:
    buf = bytearray(PACKED_ADDRESS_SIZE)
    addr.pack_into(buf, 0)
    family = socket.AF_INET if addr.family == 4 else socket.AF_INET6
    assert buf[0] == (FAMILY_TAG_V4 if addr.family == 4 else FAMILY_TAG_V6)
    assert buf[1] == 0
    assert buf[2:4] == struct.pack("!H", addr.port)  # network order, as sin_port
    assert buf[4:8] == struct.pack("!I", addr.flowinfo)  # as sin6_flowinfo
    raw = socket.inet_pton(family, str(addr.host))
    assert buf[8 : 8 + len(raw)] == raw
    assert buf[8 + len(raw) : 24] == bytes(16 - len(raw))
    assert buf[24:28] == struct.pack("<I", addr.scope_id)
    assert buf[28:32] == bytes(4)


def test_packed_layout_worked_example() -> None:
    buf = bytearray(PACKED_ADDRESS_SIZE)
    SocketAddress.parse("[fe80::1%3]:443").pack_into(buf, 0)
    tag, reserved, port, flowinfo = "06", "00", "01bb", "00000000"
    host, scope, tail = "fe800000000000000000000000000001", "03000000", "00000000"
    assert buf.hex() == tag + reserved + port + flowinfo + host + scope + tail


def test_unpack_no_address_and_bad_tag() -> None:
    buf = bytearray(PACKED_ADDRESS_SIZE)
    assert buf[0] == FAMILY_TAG_NONE
    assert SocketAddress.unpack_from(buf, 0) is None
    buf[0] = 5
    with pytest.raises(ValueError, match="family tag 5"):
        SocketAddress.unpack_from(buf, 0)


def test_unpack_masks_flowinfo_to_the_flow_label() -> None:
    buf = bytearray(PACKED_ADDRESS_SIZE)
    SocketAddress.parse("[::1]:1").pack_into(buf, 0)
    buf[4:8] = struct.pack("!I", 0x0AB12345)  # traffic class bits above the 20-bit label
    unpacked = SocketAddress.unpack_from(buf, 0)
    assert unpacked is not None
    assert unpacked.flowinfo == 0x12345


# -- v4-mapped ---------------------------------------------------------------------------


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(v4_addresses)
def test_v4_mapped_round_trip(addr: SocketAddress) -> None:
    mapped = addr.to_v4_mapped()
    assert mapped.family == 6
    assert mapped.is_v4_mapped
    assert mapped.port == addr.port
    assert mapped.unmapped() == addr
    assert not addr.is_v4_mapped
    assert addr.unmapped() is addr


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(v6_addresses)
def test_v6_to_v4_mapped_is_unchanged(addr: SocketAddress) -> None:
    assert addr.to_v4_mapped() is addr
    if not addr.is_v4_mapped:
        assert addr.unmapped() is addr


def test_v4_mapped_examples() -> None:
    mapped = SocketAddress.parse("[::ffff:192.0.2.1]:53")
    assert mapped.is_v4_mapped
    assert str(mapped.unmapped()) == "192.0.2.1:53"
    assert not SocketAddress.parse("[::1]:53").is_v4_mapped


# -- text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "family", "port", "scope"),
    [
        ("1.2.3.4:80", 4, 80, 0),
        ("0.0.0.0:0", 4, 0, 0),
        ("[::1]:80", 6, 80, 0),
        ("[fe80::1%3]:80", 6, 80, 3),
        ("[::]:65535", 6, 65535, 0),
    ],
)
def test_parse_examples(text: str, family: int, port: int, scope: int) -> None:
    addr = SocketAddress.parse(text)
    assert (addr.family, addr.port, addr.scope_id) == (family, port, scope)
    assert str(addr) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost:80", "expected an IP literal"),
        ("example.com:80", "expected an IP literal"),
        ("1.2.3.4", "port is missing"),
        ("::1:80", "needs brackets"),
        ("[1.2.3.4]:80", "brackets are for IPv6"),
        ("[::1]80", r"expected '\[ipv6\]:port'"),
        ("[::1", r"expected '\[ipv6\]:port'"),
        ("[fe80::1%eth0]:80", "numeric interface index"),
        ("1.2.3.4%3:80", "only valid on an IPv6"),
        ("1.2.3.4:65536", "port must be a number from 0 to 65535"),
        ("1.2.3.4:-1", "port must be"),
        ("1.2.3.4:+1", "port must be"),
        ("1.2.3.4:", "port must be"),
        ("1.2.3.4:\uff18\uff10", "port must be"),  # full-width digits: int() accepts them
        ("", "port is missing"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SocketAddress.parse(text)


# -- sockaddr tuples ---------------------------------------------------------------------


def test_from_sockaddr_keeps_scope_index_not_name() -> None:
    # What recvfrom returns for a link-local peer on Linux.
    addr = SocketAddress.from_sockaddr(("fe80::1%lo", 9, 0, 1))
    assert addr == SocketAddress(ipaddress.IPv6Address("fe80::1"), 9, 0, 1)


def test_from_sockaddr_numeric_scope_in_host() -> None:
    assert SocketAddress.from_sockaddr(("fe80::1%7", 9)).scope_id == 7
    assert SocketAddress.from_sockaddr(("fe80::1%7", 9, 0, 0)).scope_id == 7


def test_from_sockaddr_empty_host_is_any() -> None:
    assert str(as_socket_address(("", 0))) == "0.0.0.0:0"


def test_from_sockaddr_accepts_ipaddress_objects() -> None:
    host = ipaddress.IPv6Address("fe80::1%4")
    assert SocketAddress.from_sockaddr((host, 1)).scope_id == 4


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (("localhost", 80), "expected an IP literal"),
        (("1.2.3.4",), "expected a \\(host, port\\)"),
        (("1.2.3.4", 80, 0), "expected a \\(host, port\\)"),
        (("1.2.3.4", True), "port must be an int"),
        (("1.2.3.4", 70000), "port must be from 0 to 65535"),
        (("1.2.3.4", "80"), "port must be an int"),
        (("1.2.3.4", 80, 1, 0), "flowinfo must be 0 for an IPv4"),
        (("1.2.3.4", 80, 0, 2), "scope_id must be 0 for an IPv4"),
        (("::1", 80, 2**20, 0), "flowinfo must be from 0 to"),
        (("::1", 80, 0, -1), "scope_id must be from 0 to"),
        ((b"::1", 80), "host must be an IP literal string"),
        (8080, "expected a SocketAddress"),
        (None, "expected a SocketAddress"),
    ],
)
def test_as_socket_address_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        as_socket_address(value)  # type: ignore[arg-type]


# -- validators --------------------------------------------------------------------------

V4 = ipaddress.IPv4Address("10.0.0.1")
V6 = ipaddress.IPv6Address("fe80::1")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"host": V4, "port": -1}, "port"),
        ({"host": V4, "port": 65536}, "port"),
        ({"host": V4, "port": True}, "port"),
        ({"host": V4, "port": 1.0}, "port"),
        ({"host": V6, "port": 1, "flowinfo": 2**20}, "flowinfo"),
        ({"host": V6, "port": 1, "flowinfo": -1}, "flowinfo"),
        ({"host": V6, "port": 1, "scope_id": 2**32}, "scope_id"),
        ({"host": V4, "port": 1, "flowinfo": 1}, "flowinfo"),
        ({"host": V4, "port": 1, "scope_id": 1}, "scope_id"),
        ({"host": "10.0.0.1", "port": 1}, "host"),
        ({"host": ipaddress.IPv6Address("fe80::1%2"), "port": 1}, "host"),
    ],
)
def test_validators_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SocketAddress(**kwargs)  # type: ignore[arg-type]


def test_frozen_and_hashable() -> None:
    addr = SocketAddress.parse("1.2.3.4:5")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        addr.port = 6  # type: ignore[misc]
    assert {addr, SocketAddress.parse("1.2.3.4:5")} == {addr}


def test_constants() -> None:
    assert PACKED_ADDRESS_SIZE == 32
    assert (FAMILY_TAG_NONE, FAMILY_TAG_V4, FAMILY_TAG_V6) == (0, 4, 6)


def test_a_scope_in_the_host_and_a_different_scope_id_are_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match="disagree"):
        as_socket_address(("fe80::1%3", 80, 0, 5))
    # Agreeing, or given once, is fine.
    for sockaddr in (("fe80::1%3", 80, 0, 3), ("fe80::1%3", 80, 0, 0), ("fe80::1", 80, 0, 3)):
        assert as_socket_address(sockaddr).scope_id == 3
