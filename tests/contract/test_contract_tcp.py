"""TCP properties, for every driver: bytes survive any chunking; half close and reset are reported.

A reset is provoked the driver-agnostic way: closing a stream whose receive queue still holds
unread bytes makes TCP send RST instead of FIN (RFC 2525 section 2.17; Linux, BSD and Windows do
this), so no driver-specific SO_LINGER is needed.
"""

from __future__ import annotations

import os
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from horizon_core.events import Interest
from tests.contract.contract_profiles import contract_settings
from tests.contract.drivers_under_test import FAMILIES, LOOPBACK, UNDER_WINE, DriverUnderTest
from tests.contract.stream_kit import TransferPlan, check_two_way_stream

#: Each direction is cut into at most about this many writes and reads, so one example stays
#: cheap even for the anyio adapter (a portal round trip per call).
MAX_PIECES = 200

sizes = st.one_of(st.integers(1, 64), st.integers(1, 70_000), st.sampled_from([1, 1460, 65536]))
streams = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda pattern, n: pattern * n, st.binary(min_size=1, max_size=64), st.integers(1, 2000)),
)


@st.composite
def plans(draw: st.DrawFn) -> TransferPlan:
    """Transfer plans whose chunk sizes are floored so no direction needs more than MAX_PIECES."""
    a_to_b, b_to_a = draw(streams), draw(streams)
    floor = max(1, max(len(a_to_b), len(b_to_a)) // MAX_PIECES)
    cut = st.lists(sizes, min_size=1, max_size=4).map(lambda xs: tuple(max(floor, x) for x in xs))
    return TransferPlan(
        a_to_b=a_to_b,
        b_to_a=b_to_a,
        write_sizes=draw(cut),
        read_sizes=draw(cut),
        vectored=draw(st.booleans()),
        first_to_close=draw(st.sampled_from(["a", "b"])),
    )


@contract_settings(examples=60)
@given(plan=plans(), family=st.sampled_from(FAMILIES))
def test_bytes_survive_any_chunking_both_ways_with_half_close(
    dut: DriverUnderTest, plan: TransferPlan, family: int
) -> None:
    with dut.net() as net:
        client, server = net.tcp_pair(LOOPBACK[family])
        check_two_way_stream(net, client, server, plan)


def test_accepted_streams_are_nonblocking_and_connected(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        client, server = net.tcp_pair()
        if dut.has_fd:
            assert not os.get_blocking(server.fileno()), "accept returned a blocking stream"
            assert not os.get_blocking(client.fileno())
        with pytest.raises(BlockingIOError):
            server.recv_into(bytearray(16))
        assert client.finish_connect() is True
        assert server.peer_address == client.local_address
        assert client.peer_address == server.local_address


def test_half_closed_end_still_reads(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        client, server = net.tcp_pair()
        client.shutdown_write()
        buf = bytearray(64)
        assert net.retry(lambda: server.recv_into(buf), server, Interest.READABLE, "EOF") == 0
        sent = net.retry(lambda: server.send(b"after your FIN"), server, Interest.WRITABLE, "send")
        assert sent == len(b"after your FIN")
        n = net.retry(lambda: client.recv_into(buf), client, Interest.READABLE, "read after FIN")
        assert bytes(buf[:n]) == b"after your FIN"


@contract_settings(examples=10)
@given(unread=st.integers(1, 4096))
def test_peer_reset_is_reported(dut: DriverUnderTest, unread: int) -> None:
    with dut.net() as net:
        client, server = net.tcp_pair()
        payload = b"r" * unread
        sent = 0
        while sent < unread:
            sent += net.retry(partial(client.send, payload[sent:]), client, Interest.WRITABLE, "send")
        assert net.wait(server, Interest.READABLE, 5.0), "the bytes never reached the server"
        net.close_source(server)  # unread bytes queued: the close is a reset, not a FIN
        if UNDER_WINE and dut.id != "iocp":
            # Wine sends the RST (a Linux peer gets ECONNRESET), but a non-overlapped recv in a
            # Wine process reads the reset as end of stream (0) and SO_ERROR stays 0; only an
            # overlapped WSARecv sees it (error 64, as the iocp driver shows). Windows raises
            # WSAECONNRESET. Under Wine: the connection must still end, and nothing else arrive.
            try:
                n = net.retry(lambda: client.recv_into(bytearray(64)), client, Interest.READABLE, "reset")
            except ConnectionResetError:
                return
            assert n == 0, f"{dut.id}: under Wine a reset reads as end of stream, got {n} bytes"
            return
        with pytest.raises(ConnectionResetError):
            net.retry(lambda: client.recv_into(bytearray(64)), client, Interest.READABLE, "reset")


def test_connect_refused_is_reported(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        listener = net.listener()
        address = listener.local_address
        net.close_source(listener)  # the port now has no listener

        def connect() -> None:
            # A driver may report the refusal from connect_tcp itself (anyio awaits the
            # handshake) or, nonblocking, from a later finish_connect.
            stream = net.own(net.driver.connect_tcp(address))
            net.until(stream.finish_connect, stream, Interest.WRITABLE, "refused connect")

        with pytest.raises(ConnectionRefusedError):
            connect()


def test_accept_with_nothing_pending_would_block(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        listener = net.listener()
        with pytest.raises(BlockingIOError):
            listener.accept_nonblocking()
