"""The sync echo service's TCP path (cli/echo_service.py) on real loopback sockets.

It serves every sync driver, so these run on native and portable: bytes survive any chunking and
any backpressure (the zero-copy backlog and the copied remainder), accepts come in bursts, and a
steady echo allocates nothing per message. The service is stepped in this thread (``step``), so
every wait is a bounded poll and nothing races the allocation count.
"""

from __future__ import annotations

import gc
import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.drivers.native.native_helpers import WAIT  # first: it skips this module off Linux

# isort: split
import contextlib

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_drivers import registry
from horizon_drivers.cli import echo_service
from horizon_drivers.cli.echo_service import _SyncEcho

DRIVERS = ["native", "portable"]


@pytest.fixture(scope="module", params=DRIVERS)
def echo(request: pytest.FixtureRequest) -> Iterator[_SyncEcho]:
    server = _SyncEcho(
        registry.get_driver(request.param), None, SocketAddress.parse("127.0.0.1:0"), NetConfig()
    )
    try:
        yield server
    finally:
        server.close()


def _connect(echo: _SyncEcho, rcvbuf: int | None = None) -> socket.socket:
    assert echo.listener is not None
    client = socket.socket()
    if rcvbuf is not None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.setblocking(False)
    client.connect_ex(echo.listener.local_address.to_sockaddr())
    before = echo.tcp_connections  # a count that only grows: drops do not hide an accept
    deadline = time.monotonic() + WAIT
    while echo.tcp_connections == before:
        assert time.monotonic() < deadline, "the echo server never accepted"
        echo.step(0.01)
    return client


def _exchange(
    echo: _SyncEcho, client: socket.socket, data: bytes, chunks: list[int], read_every: int
) -> bytes:
    """Send ``data`` in ``chunks`` sizes (cycled), reading back only every ``read_every`` steps
    (so the server meets backpressure); return what came back. Bounded by WAIT of no progress."""
    view = memoryview(data)
    sent = 0
    received = bytearray()
    buf = bytearray(1 << 16)
    step = 0
    deadline = time.monotonic() + WAIT
    while len(received) < len(data):
        assert time.monotonic() < deadline, f"echo stalled at {len(received)}/{len(data)} bytes"
        step += 1
        if sent < len(data):
            size = chunks[step % len(chunks)]
            try:
                took = client.send(view[sent : sent + size])
            except BlockingIOError:
                took = 0
            sent += took
        echo.step(0)
        if step % read_every == 0 or sent == len(data):
            try:
                n = client.recv_into(buf)
            except BlockingIOError:
                n = 0
            if n:
                received += buf[:n]
                deadline = time.monotonic() + WAIT
    return bytes(received)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.binary(min_size=1, max_size=300_000),
    chunks=st.lists(st.integers(1, 200_000), min_size=1, max_size=8),
    read_every=st.sampled_from([1, 3, 50]),
    small_window=st.booleans(),
)
def test_bytes_survive_any_chunking_and_backpressure(
    echo: _SyncEcho, data: bytes, chunks: list[int], read_every: int, small_window: bool
) -> None:
    with _connect(echo, rcvbuf=4096 if small_window else None) as client:
        assert _exchange(echo, client, data, chunks, read_every) == data


def test_a_backlog_takes_over_the_buffer_and_then_drains(
    echo: _SyncEcho, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny receive window on the client: the echo of 2 MB cannot all be sent at once.
    data = bytes(range(256)) * 8192
    held = []
    original = _SyncEcho._hold

    def spy(self: _SyncEcho, *args: object) -> None:
        start, end = args[3], args[4]
        held.append(end - start)  # type: ignore[operator]
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_SyncEcho, "_hold", spy)
    with _connect(echo, rcvbuf=4096) as client:
        assert _exchange(echo, client, data, [65536], 20) == data
    assert any(size > echo_service._TCP_COPY_LIMIT for size in held), "no zero-copy backlog"
    assert all(c.backlog is None for c in echo.connections.values())
    assert len(echo.spares) <= echo_service._TCP_SPARES


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_end_of_stream_and_a_reset_drop_the_connection(echo: _SyncEcho, reset: bool) -> None:
    known = set(echo.connections)
    client = _connect(echo)
    (token,) = set(echo.connections) - known
    if reset:  # SO_LINGER {on, 0}: close() sends RST
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    deadline = time.monotonic() + WAIT
    while token in echo.connections:
        assert time.monotonic() < deadline, "a closed connection was never dropped"
        echo.step(0.01)


def test_a_burst_of_connects_is_accepted(echo: _SyncEcho) -> None:
    assert echo.listener is not None
    before = echo.tcp_connections
    address = echo.listener.local_address
    clients = [socket.create_connection((str(address.host), address.port)) for _ in range(40)]
    try:
        deadline = time.monotonic() + WAIT
        while echo.tcp_connections < before + 40:
            assert time.monotonic() < deadline, "connects were never accepted"
            echo.step(0.01)
        for i, client in enumerate(clients):
            client.sendall(i.to_bytes(2, "big"))
        for i, client in enumerate(clients):
            client.settimeout(0)
            got = b""
            while len(got) < 2:
                assert time.monotonic() < deadline
                echo.step(0.001)
                with contextlib.suppress(BlockingIOError):
                    got += client.recv(2 - len(got))
            assert got == i.to_bytes(2, "big")
    finally:
        for client in clients:
            client.close()


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="counts CPython's blocks")
def test_steady_tcp_echo_allocates_nothing_per_message(echo: _SyncEcho) -> None:
    message = b"m" * 64
    buf = bytearray(64)

    def round_trip(client: socket.socket) -> None:
        client.send(message)
        got = 0
        deadline = time.monotonic() + WAIT
        while got < 64:
            assert time.monotonic() < deadline, "no echo"
            echo.step(0.001)
            with contextlib.suppress(BlockingIOError):
                got += client.recv_into(memoryview(buf)[got:])

    with _connect(echo) as client:
        for _ in range(500):  # warm up: caches, free lists, first-use allocations
            round_trip(client)
        gc.collect()
        before = sys.getallocatedblocks()
        for _ in range(20_000):
            round_trip(client)
        gc.collect()
        growth = sys.getallocatedblocks() - before
    assert growth < 200, f"{growth} blocks kept after 20,000 echoed messages"
