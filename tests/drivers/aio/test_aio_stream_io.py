"""The stream's data path: receive, receive_into and send on asyncio, uvloop and trio.

Bytes survive any chunking; a cancelled waiting receive loses nothing and leaves the stream
usable; aclose wakes a waiting receive; no reader is left registered with the loop after close.
"""

from __future__ import annotations

import array
import asyncio
import socket

import anyio
import pytest
from anyio.abc import SocketAttribute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from horizon_drivers.aio import HorizonSocketStream
from horizon_drivers.aio.readiness import IDLE_WAKES, LoopReadiness
from tests.drivers.aio.stream_helpers import CountingSocket, pair

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0


def _chunks(payload: bytes, sizes: list[int]) -> list[bytes]:
    out, at, i = [], 0, 0
    while at < len(payload):
        size = sizes[i % len(sizes)]
        out.append(payload[at : at + size])
        at += size
        i += 1
    return out


def _reader_registered(fd: int) -> bool | None:
    """Whether asyncio's selector watches ``fd`` (None: not a selector loop, or not asyncio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return None
    return fd in selector.get_map()


_SIZES = st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(min_size=1, max_size=2048).map(lambda b: b * 97),
    send_sizes=_SIZES,
    receive_sizes=_SIZES,
    into=st.booleans(),
    as_memoryview=st.booleans(),
    nowait=st.booleans(),
)
async def test_bytes_survive_any_chunking(
    payload: bytes,
    send_sizes: list[int],
    receive_sizes: list[int],
    into: bool,
    as_memoryview: bool,
    nowait: bool,
) -> None:
    async with pair() as (client, server):
        received = bytearray()

        async def sender() -> None:
            for chunk in _chunks(payload, send_sizes):
                item = memoryview(chunk) if as_memoryview else chunk
                sent = 0
                if nowait:
                    try:
                        sent = client.send_nowait(item)
                    except anyio.WouldBlock:
                        sent = 0
                    assert 0 <= sent <= len(chunk)
                if sent < len(chunk):
                    await client.send(memoryview(chunk)[sent:])  # type: ignore[arg-type]
            await client.send_eof()

        with anyio.fail_after(TIMEOUT * 2):
            async with anyio.create_task_group() as group:
                group.start_soon(sender)
                buffers = [bytearray(n) for n in receive_sizes]
                i = 0
                while True:
                    try:
                        if into:
                            buffer = buffers[i % len(buffers)]
                            try:
                                if not nowait:
                                    raise anyio.WouldBlock
                                n = server.receive_into_nowait(buffer)
                            except anyio.WouldBlock:
                                n = await server.receive_into(buffer)
                            assert 1 <= n <= len(buffer)
                            received += buffer[:n]
                        else:
                            data = await server.receive(receive_sizes[i % len(receive_sizes)])
                            assert 1 <= len(data) <= receive_sizes[i % len(receive_sizes)]
                            received += data
                    except anyio.EndOfStream:
                        break
                    i += 1
        assert received == payload


async def test_large_send_while_peer_reads_slowly() -> None:
    # Many partial writes: the send waits for writability and resumes at the right offset.
    payload = bytes(range(256)) * 16384  # 4 MiB
    async with pair() as (client, server):
        client.extra(SocketAttribute.raw_socket).setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        received = bytearray()
        with anyio.fail_after(TIMEOUT * 2):
            async with anyio.create_task_group() as group:
                group.start_soon(client.send, payload)
                buffer = bytearray(4096)
                while len(received) < len(payload):
                    n = await server.receive_into(buffer)
                    received += buffer[:n]
                    if len(received) % 65536 < 4096:
                        await anyio.sleep(0)
        assert received == payload


async def test_nowait_calls_move_what_is_there_or_raise_would_block() -> None:
    async with pair() as (client, server):
        buffer = bytearray(8)
        with pytest.raises(anyio.WouldBlock):
            server.receive_into_nowait(buffer)
        assert client.send_nowait(b"") == 0
        assert client.send_nowait(b"hello") == 5
        await client.send_eof()
        received = bytearray()
        with anyio.fail_after(TIMEOUT):
            while True:
                try:
                    n = server.receive_into_nowait(buffer)
                except anyio.WouldBlock:
                    await anyio.wait_readable(server.extra(SocketAttribute.raw_socket))
                    continue
                except anyio.EndOfStream:
                    break
                assert 1 <= n <= len(buffer)
                received += buffer[:n]
        assert received == b"hello"


async def test_receive_into_nowait_refuses_an_empty_buffer() -> None:
    async with pair() as (client, server):
        await client.send(b"x")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_readable(server.extra(SocketAttribute.raw_socket))
        with pytest.raises(ValueError, match="must not be empty"):
            server.receive_into_nowait(bytearray(0))


async def test_nowait_calls_are_not_checkpoints_and_respect_the_guards() -> None:
    async with pair() as (client, server):
        await client.send(b"abc")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_readable(server.extra(SocketAttribute.raw_socket))
        buffer = bytearray(8)
        with anyio.CancelScope() as scope:
            scope.cancel()
            # Inside a cancelled scope: a checkpoint would raise; these move the bytes.
            n = server.receive_into_nowait(buffer)
            assert server.send_nowait(b"d") == 1
        assert scope.cancelled_caught is False
        assert buffer[:n] == b"abc"[:n]

        async with anyio.create_task_group() as group:
            group.start_soon(server.receive)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                server.receive_into_nowait(buffer)
            group.cancel_scope.cancel()


async def test_a_receive_after_a_dry_nowait_read_waits_and_is_still_a_checkpoint() -> None:
    async with pair() as (client, server):
        buffer = bytearray(8)
        with pytest.raises(anyio.WouldBlock):
            server.receive_into_nowait(buffer)
        await client.send(b"x")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_readable(server.extra(SocketAttribute.raw_socket))
        with anyio.CancelScope() as scope:
            scope.cancel()
            await server.receive_into(buffer)  # cancelled at its first await: nothing read
        assert scope.cancelled_caught
        with anyio.fail_after(TIMEOUT):
            assert await server.receive_into(buffer) == 1
        assert buffer[:1] == b"x"

        with pytest.raises(anyio.WouldBlock):
            server.receive_into_nowait(buffer)
        async with anyio.create_task_group() as group:
            group.start_soon(client.send, b"late")
            with anyio.fail_after(TIMEOUT):
                n = await server.receive_into(buffer)  # waits for the bytes to arrive
        assert bytes(buffer[:n]) == b"late"[:n]


def _count_reads(stream: HorizonSocketStream) -> tuple[socket.socket, CountingSocket]:
    """Put a counting stand-in under ``stream``; return the real socket and the counter."""
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    counting = CountingSocket(raw)
    stream._sock = counting  # type: ignore[assignment]
    return raw, counting


@pytest.mark.parametrize("method", ["receive_into", "receive_into_nowait", "receive"])
async def test_after_a_short_read_the_next_receive_waits_before_it_reads(method: str) -> None:
    async with pair() as (client, server):
        raw, counting = _count_reads(server)
        buffer = bytearray(8)
        await client.send(b"x")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_readable(raw)
        if method == "receive":
            assert await server.receive(8) == b"x"
        elif method == "receive_into":
            assert await server.receive_into(buffer) == 1
        else:
            assert server.receive_into_nowait(buffer) == 1
        # Short: the kernel had no more. The next receive waits for readability and then reads
        # once, instead of trying a read that fails first.
        before = counting.reads
        async with anyio.create_task_group() as group:
            group.start_soon(client.send, b"late")
            with anyio.fail_after(TIMEOUT):
                n = await server.receive_into(buffer)
        assert bytes(buffer[:n]) == b"late"[:n]
        assert counting.reads == before + 1


async def test_bytes_arriving_after_a_short_read_are_still_received() -> None:
    async with pair() as (client, server):
        raw = server.extra(SocketAttribute.raw_socket)
        buffer = bytearray(8)
        await client.send(b"x")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_readable(raw)
            assert await server.receive_into(buffer) == 1  # short
            await client.send(b"y")  # arrives before the next receive waits
            await anyio.wait_readable(raw)
            assert await server.receive_into(buffer) == 1
        assert buffer[:1] == b"y"


async def test_a_full_read_is_not_taken_as_drained() -> None:
    async with pair() as (client, server):
        raw, counting = _count_reads(server)
        buffer = bytearray(4)
        await client.send(b"abcdefgh")
        with anyio.fail_after(TIMEOUT):
            for _ in range(1000):  # loopback may deliver the 8 bytes in pieces: wait for all
                await anyio.wait_readable(raw)
                if len(raw.recv(16, socket.MSG_PEEK)) == 8:
                    break
                await anyio.sleep(0.001)
            else:
                pytest.fail("the 8 bytes never all arrived")
            assert await server.receive_into(buffer) == 4  # full: more may be waiting
            before = counting.reads
            assert await server.receive_into(buffer) == 4  # read at once, after a checkpoint
        assert counting.reads == before + 1
        assert buffer == b"efgh"


async def test_send_nowait_raises_would_block_when_the_buffer_is_full() -> None:
    async with pair() as (client, server):
        raw = client.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        server.extra(SocketAttribute.raw_socket).setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        chunk = bytes(65536)
        total = 0
        for _ in range(10_000):  # the peer does not read: the kernel's buffers fill up
            try:
                sent = client.send_nowait(chunk)
            except anyio.WouldBlock:
                break
            assert 1 <= sent <= len(chunk)
            total += sent
        else:
            pytest.fail("the send buffer never filled")
        assert total > 0
        received = 0
        buffer = bytearray(65536)
        with anyio.fail_after(TIMEOUT):
            while received < total:
                received += await server.receive_into(buffer)
        assert received == total  # WouldBlock sent nothing


async def test_nowait_after_close_raises_closed_resource_error() -> None:
    async with pair() as (_client, server):
        await server.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            server.receive_into_nowait(bytearray(4))
        with pytest.raises(anyio.ClosedResourceError):
            server.send_nowait(b"x")


async def test_receive_into_memoryview_and_array() -> None:
    async with pair() as (client, server):
        await client.send(b"abcdefgh")
        backing = bytearray(16)
        with anyio.fail_after(TIMEOUT):
            n = await server.receive_into(memoryview(backing)[4:7])
            assert n == 3
            assert backing[4:7] == b"abc"
            numbers = array.array("i", [0, 0])
            n = await server.receive_into(memoryview(numbers))
            assert n == 5  # bytes, not items
            assert numbers.tobytes()[:5] == b"defgh"


async def test_receive_into_end_of_stream_raises_like_receive() -> None:
    async with pair() as (client, server):
        await client.send(b"xy")
        await client.send_eof()
        buffer = bytearray(10)
        with anyio.fail_after(TIMEOUT):
            assert await server.receive_into(buffer) == 2
            with pytest.raises(anyio.EndOfStream):
                await server.receive_into(buffer)
            with pytest.raises(anyio.EndOfStream):
                await server.receive()


async def test_receive_into_empty_buffer_is_value_error() -> None:
    async with pair() as (client, server):
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(ValueError, match="empty"):
                await server.receive_into(bytearray())
            # With data waiting, too, and nothing was consumed.
            await client.send(b"kept")
            await anyio.sleep(0.01)
            with pytest.raises(ValueError, match="empty"):
                await server.receive_into(memoryview(bytearray(8))[:0])
            assert await server.receive() == b"kept"


async def test_receive_into_after_close_is_closed_resource_error() -> None:
    async with pair() as (_, server):
        await server.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await server.receive_into(bytearray(4))


async def test_cancelled_waiting_receive_loses_nothing_and_stream_stays_usable() -> None:
    async with pair() as (client, server):
        for round_ in range(20):
            into = round_ % 2 == 0
            with anyio.move_on_after(0.005) as scope:
                if into:
                    await server.receive_into(bytearray(100))
                else:
                    await server.receive()
            assert scope.cancelled_caught
            message = f"message {round_}".encode()
            await client.send(message)
            with anyio.fail_after(TIMEOUT):
                if into:
                    buffer = bytearray(100)
                    n = await server.receive_into(buffer)
                    assert bytes(buffer[:n]) == message
                else:
                    assert await server.receive() == message


async def test_cancel_racing_arrival_loses_nothing() -> None:
    # The data arrives around the moment the receive is cancelled: whatever the race's outcome,
    # every byte comes out exactly once.
    async with pair() as (client, server):
        expected = bytearray()
        received = bytearray()
        for round_ in range(60):
            message = round_.to_bytes(2, "big") * 8
            expected += message
            async with anyio.create_task_group() as group:

                async def receive_once(scope: anyio.CancelScope) -> None:
                    with scope:
                        received.extend(await server.receive())

                scope = anyio.CancelScope()
                group.start_soon(receive_once, scope)
                await anyio.sleep(0)
                await client.send(message)
                for _ in range(round_ % 4):
                    await anyio.sleep(0)
                scope.cancel()
        with anyio.fail_after(TIMEOUT):
            while len(received) < len(expected):
                received.extend(await server.receive())
        assert received == expected


async def test_aclose_wakes_waiting_receive_with_closed_resource_error() -> None:
    for into in (False, True):
        async with pair() as (_, server):
            failures: list[BaseException] = []

            async def wait_for_data(
                stream: HorizonSocketStream = server,
                into: bool = into,
                failures: list[BaseException] = failures,
            ) -> None:
                try:
                    if into:
                        await stream.receive_into(bytearray(10))
                    else:
                        await stream.receive()
                except anyio.ClosedResourceError as exc:
                    failures.append(exc)

            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as group:
                    group.start_soon(wait_for_data)
                    await anyio.sleep(0.02)
                    await server.aclose()
            assert len(failures) == 1


async def test_aclose_wakes_waiting_send() -> None:
    async with pair() as (client, _):
        client.extra(SocketAttribute.raw_socket).setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        failures: list[BaseException] = []

        async def flood() -> None:
            try:
                await client.send(b"x" * (32 * 1024 * 1024))
            except anyio.ClosedResourceError as exc:
                failures.append(exc)

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(flood)
                await anyio.sleep(0.05)
                await client.aclose()
        assert len(failures) == 1


async def test_no_reader_left_registered_after_close() -> None:
    async with pair() as (client, server):
        fd = server.extra(SocketAttribute.raw_socket).fileno()
        with anyio.move_on_after(0.01):
            await server.receive()  # registers the persistent reader on asyncio and uvloop
        await client.send(b"ping")
        with anyio.fail_after(TIMEOUT):
            assert await server.receive() == b"ping"
        if _reader_registered(fd) is not None:
            assert _reader_registered(fd)  # kept between waits: that is the point
        readiness = server._readiness
        await server.aclose()
        assert _reader_registered(fd) in (None, False)
        if isinstance(readiness, LoopReadiness):  # asyncio and uvloop (uvloop's map is not public)
            assert not readiness.reading
        if _reader_registered(fd) is not None:
            # asyncio: remove_reader says whether anything was still registered.
            assert asyncio.get_running_loop().remove_reader(fd) is False
        # trio: notify_closing forgot the fd; its epoll registration goes with the close.


async def test_unread_data_does_not_keep_the_reader_registered() -> None:
    # A level-triggered reader nobody waits on would wake the loop at every iteration.
    async with pair() as (client, server):
        readiness = server._readiness
        with anyio.move_on_after(0.01):
            await server.receive()
        if not isinstance(readiness, LoopReadiness):
            pytest.skip("persistent readers exist on asyncio and uvloop only")
        assert readiness.reading
        await client.send(b"unread")
        with anyio.fail_after(TIMEOUT):
            while readiness.reading:
                await anyio.sleep(0)
        for _ in range(IDLE_WAKES * 3):
            await anyio.sleep(0)
        assert not readiness.reading
        with anyio.fail_after(TIMEOUT):
            assert await server.receive() == b"unread"
            with anyio.move_on_after(0.01):
                await server.receive()
        assert readiness.reading


async def test_ping_pong_many_waits() -> None:
    # Every receive waits: the persistent reader must wake each one (no lost or stale wake).
    async with pair() as (client, server):

        async def echo() -> None:
            buffer = bytearray(64)
            view = memoryview(buffer)
            try:
                while True:
                    n = await server.receive_into(buffer)
                    await server.send(view[:n])  # type: ignore[arg-type]
            except anyio.EndOfStream:
                pass

        with anyio.fail_after(TIMEOUT * 2):
            async with anyio.create_task_group() as group:
                group.start_soon(echo)
                for i in range(500):
                    message = i.to_bytes(4, "big")
                    await client.send(message)
                    got = b""
                    while len(got) < 4:
                        got += await client.receive(4 - len(got))
                    assert got == message
                await client.send_eof()
