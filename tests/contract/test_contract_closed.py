"""Closed objects, for every driver: every operation raises the documented error, never crashes.

The documented error is :class:`~horizon_core.errors.SocketClosedError`, an OSError with errno
EBADF. Hypothesis draws which operations run before the close (they must work or would-block),
how many times ``close()`` is called (it is idempotent), and the order of the operations after it.
A failed ``recv_batch`` on a closed socket must leave the batch untouched.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from horizon_core.buffers import BufferPool, SlotState
from horizon_core.contract import Runtime, TcpListener, TcpStream, UdpSocket
from horizon_core.errors import SocketClosedError
from horizon_core.events import Interest
from horizon_core.slab import Token
from tests.contract.contract_profiles import contract_settings
from tests.contract.drivers_under_test import DriverUnderTest, Net

#: Where the UDP operations send: a port nobody listens on is not needed, any address will do.
PEER = "127.0.0.1:9"

UDP_OPERATIONS: dict[str, Callable[[UdpSocket], object]] = {
    "recv_batch": lambda s: s.recv_batch(BufferPool(2, 64).batch(2)),
    "send_batch": lambda s: s.send_batch([(b"x", PEER)]),
    "send_to": lambda s: s.send_to(b"x", PEER),
    "recv_from": lambda s: s.recv_from(bytearray(64)),
    "connect": lambda s: s.connect(PEER),
    "send": lambda s: s.send(b"x"),
    "recv_into": lambda s: s.recv_into(bytearray(64)),
}
CONNECTED_UDP = {"connect", "send", "recv_into"}

STREAM_OPERATIONS: dict[str, Callable[[TcpStream], object]] = {
    "recv_into": lambda s: s.recv_into(bytearray(64)),
    "send": lambda s: s.send(b"x"),
    "send_vectored": lambda s: s.send_vectored([b"a", b"b"]),
    "shutdown_write": lambda s: s.shutdown_write(),
    "finish_connect": lambda s: s.finish_connect(),
}

LISTENER_OPERATIONS: dict[str, Callable[[TcpListener], object]] = {
    "accept_nonblocking": lambda s: s.accept_nonblocking(),
}


def check_closed_error(exc: BaseException) -> None:
    assert isinstance(exc, SocketClosedError), f"expected SocketClosedError, got {exc!r}"
    assert isinstance(exc, OSError)
    assert exc.errno == errno.EBADF


def run_after_close(
    operations: dict[str, Callable[[object], object]], names: list[str], target: object
) -> None:
    for name in names:
        with pytest.raises(OSError) as info:
            operations[name](target)
        check_closed_error(info.value)


@contract_settings(examples=25)
@given(
    before=st.lists(st.sampled_from(["recv_batch", "recv_from"]), max_size=3),
    closes=st.integers(1, 3),
    after=st.permutations(sorted(UDP_OPERATIONS)),
)
def test_closed_udp_socket(dut: DriverUnderTest, before: list[str], closes: int, after: list[str]) -> None:
    with dut.net() as net:
        sock = net.udp()
        for name in before:
            with contextlib.suppress(BlockingIOError):
                UDP_OPERATIONS[name](sock)
        for _ in range(closes):
            sock.close()
        assert sock.closed
        names = [n for n in after if dut.connected_udp or n not in CONNECTED_UDP]
        run_after_close(UDP_OPERATIONS, names, sock)  # type: ignore[arg-type]
        batch = BufferPool(4, 64).batch(4)
        with pytest.raises(OSError):
            sock.recv_batch(batch)
        assert batch.pool.counts()[SlotState.FREE] == 4
        if dut.own_runtime:  # registering a closed socket is an operation on it too
            with pytest.raises(OSError) as info:
                net.runtime.register(sock, Interest.READABLE)
            check_closed_error(info.value)
        assert len(batch) == 0


def _pair(net: Net) -> tuple[TcpStream, TcpStream]:
    return net.tcp_pair()


@contract_settings(examples=25)
@given(
    which=st.sampled_from(["client", "server"]),
    closes=st.integers(1, 3),
    after=st.permutations(sorted(STREAM_OPERATIONS)),
)
def test_closed_tcp_stream(dut: DriverUnderTest, which: str, closes: int, after: list[str]) -> None:
    with dut.net() as net:
        client, server = _pair(net)
        stream = client if which == "client" else server
        for _ in range(closes):
            stream.close()
        assert stream.closed
        run_after_close(STREAM_OPERATIONS, after, stream)  # type: ignore[arg-type]


def test_closed_tcp_listener(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        listener = net.listener()
        listener.close()
        listener.close()
        assert listener.closed
        run_after_close(LISTENER_OPERATIONS, list(LISTENER_OPERATIONS), listener)  # type: ignore[arg-type]


def test_closed_runtime(dut: DriverUnderTest) -> None:
    if not dut.own_runtime:
        pytest.skip(f"{dut.id}: no Runtime of its own (its event loop is anyio's)")
    with dut.net() as net:
        sock = net.udp()
        runtime: Runtime = net.driver.runtime()
        token = runtime.register(sock, Interest.READABLE)
        runtime.close()
        runtime.close()
        assert runtime.closed
        operations: dict[str, Callable[[Token], object]] = {
            "register": lambda _: runtime.register(net.udp(), Interest.READABLE),
            "reregister": lambda t: runtime.reregister(t, Interest.WRITABLE),
            "deregister": lambda t: runtime.deregister(t),
            "poll_once": lambda _: runtime.poll_once(0),
            "run": lambda _: runtime.run(lambda event: None, timeout=0),
            "wake": lambda _: runtime.wake(),
        }
        run_after_close(operations, list(operations), token)  # type: ignore[arg-type]
