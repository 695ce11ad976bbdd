"""The anyio driver's TCP streams and listeners: anyio semantics and options on every stream."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs
import pytest
from anyio.abc import SocketAttribute, SocketListener, SocketStream
from anyio.streams.stapled import MultiListener

from horizon_core.config import NetConfig
from horizon_core.contract import AsyncTcpListener, AsyncTcpStream
from horizon_core.options import OptionReport
from horizon_drivers.aio import (
    HorizonAttribute,
    HorizonSocketListener,
    HorizonSocketStream,
    connect_tcp,
    create_tcp_listener,
)

pytestmark = pytest.mark.anyio



TIMEOUT = 5.0


@asynccontextmanager
async def connection(
    config: NetConfig | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[HorizonSocketListener, HorizonSocketStream, HorizonSocketStream]]:
    multi = await create_tcp_listener(local_host=host, config=config)
    listener = multi.listeners[0]
    assert isinstance(listener, HorizonSocketListener)
    async with multi:
        with anyio.fail_after(TIMEOUT):
            client = await connect_tcp(host, listener.local_address.port, config=config)
            server = await listener.accept()
        async with client, server:
            yield listener, client, server


async def test_objects_are_anyio_sockets_with_typed_attributes() -> None:
    async with connection() as (listener, client, server):
        assert isinstance(listener, SocketListener)
        assert isinstance(client, SocketStream)
        assert isinstance(server, SocketStream)
        port = listener.extra(SocketAttribute.local_port)
        assert client.extra(SocketAttribute.remote_address) == ("127.0.0.1", port)
        assert client.extra(SocketAttribute.remote_port) == port
        assert server.extra(SocketAttribute.remote_port) == client.extra(SocketAttribute.local_port)
        assert client.peer_address == server.local_address
        assert isinstance(listener, AsyncTcpListener)
        assert isinstance(client, AsyncTcpStream)
        assert isinstance(server, AsyncTcpStream)
        for each in (listener, client, server):
            assert isinstance(each.extra(HorizonAttribute.options), OptionReport)
            # No config: NetConfig() with anyio's defaults (no SO_REUSEPORT, anyio's backlog).
            assert attrs.evolve(each.extra(HorizonAttribute.config), tcp_backlog=1024) == attrs.evolve(
                NetConfig(), reuse_port=False
            )
            assert isinstance(each.extra(SocketAttribute.raw_socket), socket.socket)


async def test_bytes_survive_any_chunking() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with connection() as (_, client, server):
        received = bytearray()
        with anyio.fail_after(TIMEOUT * 2):
            async with anyio.create_task_group() as group:
                group.start_soon(client.send, payload)
                while len(received) < len(payload):
                    received += await server.receive(3333)
        assert received == payload


async def test_end_of_stream_after_half_close() -> None:
    async with connection() as (_, client, server):
        with anyio.fail_after(TIMEOUT):
            await client.send(b"last words")
            await client.send_eof()
            assert await server.receive() == b"last words"
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
            await server.send(b"still open this way")  # half close: the other way works
            assert await client.receive() == b"still open this way"


async def test_reset_is_broken_resource_error() -> None:
    async with connection() as (_, client, server):
        raw = client.extra(SocketAttribute.raw_socket)
        # SO_LINGER 0: close sends RST instead of FIN.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()
        with anyio.fail_after(TIMEOUT), pytest.raises(anyio.BrokenResourceError) as info:
            await server.receive()
        assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_closed_resource_error_after_close() -> None:
    async with connection() as (listener, client, _):
        await client.aclose()
        await client.aclose()  # idempotent
        with pytest.raises(anyio.ClosedResourceError):
            await client.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await client.send(b"x")
        with pytest.raises(anyio.ClosedResourceError):
            await client.send_eof()
        await listener.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await listener.accept()


@pytest.mark.parametrize("what", ["receive", "accept"])
async def test_close_while_waiting_raises_closed_resource_error(what: str) -> None:
    async with connection() as (listener, _, server):
        target = server if what == "receive" else listener

        waiting = server.receive if what == "receive" else listener.accept

        async def wait() -> None:
            with pytest.raises(anyio.ClosedResourceError):
                await waiting()

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                await target.aclose()


async def test_busy_resource_error_on_concurrent_receive_and_accept() -> None:
    async with connection() as (listener, client, server):
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(server.receive)
                group.start_soon(listener.accept)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await server.receive()
                with pytest.raises(anyio.BusyResourceError):
                    await listener.accept()
                await client.send(b"wake")
                extra = await connect_tcp("127.0.0.1", listener.local_address.port, config=None)
            await extra.aclose()


async def test_cancelled_receive_loses_nothing() -> None:
    async with connection() as (_, client, server):
        with anyio.fail_after(TIMEOUT):
            with anyio.move_on_after(0.05) as scope:
                await server.receive()
            assert scope.cancelled_caught
            await client.send(b"after the cancel")
            assert await server.receive() == b"after the cancel"


async def test_accepted_and_connecting_streams_are_configured() -> None:
    config = attrs.evolve(NetConfig(), recv_buf=256 * 1024, send_buf=128 * 1024, tos=0x10)
    async with connection(config) as (_, client, server):
        for stream in (client, server):
            raw = stream.extra(SocketAttribute.raw_socket)
            report = stream.extra(HorizonAttribute.options)
            assert raw.getblocking() is False
            assert report["tcp_nodelay"].effective == raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert report["recv_buf"].effective == raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert report["send_buf"].effective == raw.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            assert report["tos"].effective == raw.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x10


async def test_listener_options_and_backlog_override() -> None:
    config = NetConfig(reuse_port=False)
    multi = await create_tcp_listener(local_host="127.0.0.1", backlog=7, config=config)
    async with multi:
        listener = multi.listeners[0]
        assert isinstance(listener, HorizonSocketListener)
        raw = listener.extra(SocketAttribute.raw_socket)
        assert listener.config.tcp_backlog == 7
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        assert listener.options["reuse_addr"].effective == raw.getsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR
        )
        assert multi.extra(HorizonAttribute.options) is listener.options


async def test_listener_port_is_free_right_after_aclose() -> None:
    config = NetConfig(reuse_port=False, reuse_addr=False)
    multi = await create_tcp_listener(local_host="127.0.0.1", config=config)
    port = multi.extra(SocketAttribute.local_port)
    await multi.aclose()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
        probe.listen()


async def test_serve_hands_configured_streams_to_the_handler() -> None:
    multi = await create_tcp_listener(local_host="127.0.0.1", config=NetConfig())
    port = multi.extra(SocketAttribute.local_port)
    seen: list[bytes] = []

    async def handler(stream: SocketStream) -> None:
        async with stream:
            assert isinstance(stream, HorizonSocketStream)
            data = await stream.receive()
            seen.append(data)
            await stream.send(data[::-1])

    async with multi:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(multi.serve, handler)
                async with await connect_tcp("127.0.0.1", port, config=None) as client:
                    await client.send(b"olleh")
                    assert await client.receive() == b"hello"
                group.cancel_scope.cancel()
    assert seen == [b"olleh"]


async def test_wildcard_listener_serves_both_families(ipv6: None) -> None:
    # An explicit ipv6_only=True opts out of anyio's single dual-stack socket: one per family.
    multi = await create_tcp_listener(config=NetConfig(ipv6_only=True))
    async with multi:
        families = sorted(each.extra(SocketAttribute.family) for each in multi.listeners)
        assert families == sorted([socket.AF_INET, socket.AF_INET6])
        ports = {each.extra(SocketAttribute.local_port) for each in multi.listeners}
        assert len(ports) == 1
        port = ports.pop()
        six = next(e for e in multi.listeners if e.extra(SocketAttribute.family) == socket.AF_INET6)
        assert isinstance(six, HorizonSocketListener)
        assert six.options["ipv6_only"].effective == 1
        with anyio.fail_after(TIMEOUT):
            for host in ("127.0.0.1", "::1"):
                async with await connect_tcp(host, port, config=None) as client:
                    await client.send(b"hi")


async def test_connect_by_name_falls_back_between_addresses() -> None:
    # Only IPv4 listens; "localhost" may resolve to ::1 first: the next address is tried.
    multi = await create_tcp_listener(local_host="127.0.0.1", config=None)
    async with multi:
        port = multi.extra(SocketAttribute.local_port)
        with anyio.fail_after(TIMEOUT):
            async with await connect_tcp("localhost", port, happy_eyeballs_delay=0.05, config=None) as client:
                assert client.extra(SocketAttribute.remote_address) == ("127.0.0.1", port)


async def test_happy_eyeballs_uses_the_address_that_connects(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import horizon_drivers.aio.tcp as tcp_module
    from horizon_core.addresses import SocketAddress
    from horizon_drivers.aio.resolution import Resolved

    multi = await create_tcp_listener(local_host="127.0.0.1", config=None)
    async with multi:
        port = multi.extra(SocketAttribute.local_port)

        async def two_addresses(*_args: object, **_kwargs: object) -> list[Resolved]:
            # 127.0.0.2 has no listener (refused); 127.0.0.1 answers.
            return [
                (socket.AF_INET, socket.SOCK_STREAM, SocketAddress.parse(f"127.0.0.2:{port}")),
                (socket.AF_INET, socket.SOCK_STREAM, SocketAddress.parse(f"127.0.0.1:{port}")),
            ]

        monkeypatch.setattr(tcp_module, "lookup", two_addresses)
        with anyio.fail_after(TIMEOUT):
            async with await connect_tcp("example.invalid", port, config=None) as client:
                assert client.extra(SocketAttribute.remote_address) == ("127.0.0.1", port)


async def test_connection_refused_is_an_oserror() -> None:
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        port = gone.getsockname()[1]
    with anyio.fail_after(TIMEOUT), pytest.raises(OSError):
        await connect_tcp("127.0.0.1", port, config=None)


async def test_ipv6_stream(ipv6: None) -> None:
    async with connection(host="::1") as (_, client, server):
        assert client.extra(SocketAttribute.family) == socket.AF_INET6
        with anyio.fail_after(TIMEOUT):
            await client.send(b"six")
            assert await server.receive() == b"six"
        assert server.peer_address.family == 6


async def test_listener_on_a_name_listens_on_every_address() -> None:
    multi = await create_tcp_listener(local_host="localhost", config=None)
    async with multi:
        assert isinstance(multi, MultiListener)
        assert len({each.extra(SocketAttribute.local_port) for each in multi.listeners}) == 1
