"""The anyio driver's UDP sockets: anyio semantics, batches, options, IPv6, stats."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs
import pytest
from anyio.abc import ConnectedUDPSocket, SocketAttribute, UDPSocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_core.contract import AsyncUdpSocket
from horizon_core.options import OptionReport, OptionStatus
from horizon_core.stats import StatsSnapshot
from horizon_drivers.aio import (
    HorizonAttribute,
    HorizonConnectedUDPSocket,
    HorizonUDPSocket,
    create_connected_udp_socket,
    create_udp_socket,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0


async def _pair(engine: str, host: str = "127.0.0.1") -> tuple[HorizonUDPSocket, HorizonUDPSocket]:
    a = await create_udp_socket(local_host=host, batch_engine=engine, config=NetConfig())  # type: ignore[arg-type]
    b = await create_udp_socket(local_host=host, batch_engine=engine, config=NetConfig())  # type: ignore[arg-type]
    return a, b


@asynccontextmanager
async def udp_pair(
    engine: str, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[HorizonUDPSocket, HorizonUDPSocket]]:
    # A context manager, not an async fixture: anyio's plugin needs trio >= 0.24 for those.
    a, b = await _pair(engine, host)
    async with a, b:
        yield a, b


def _port(sock: UDPSocket | ConnectedUDPSocket) -> int:
    return sock.extra(SocketAttribute.local_port)


# -- anyio's interface and semantics -----------------------------------------------------------


async def test_is_an_anyio_udp_socket_with_typed_attributes(engine: str) -> None:
    async with udp_pair(engine) as (a, _b):
        assert isinstance(a, UDPSocket)
        assert a.extra(SocketAttribute.family) == socket.AF_INET
        assert a.extra(SocketAttribute.local_address) == ("127.0.0.1", _port(a))
        assert isinstance(a.extra(SocketAttribute.raw_socket), socket.socket)
        assert a.extra(SocketAttribute.remote_address, None) is None
        assert isinstance(a.extra(HorizonAttribute.options), OptionReport)
        assert a.extra(HorizonAttribute.config) == NetConfig()
        assert isinstance(a.extra(HorizonAttribute.stats), StatsSnapshot)
        assert a.extra(HorizonAttribute.batch_engine) == ("recvmmsg" if engine == "native" else "portable")
        assert a.local_address == SocketAddress.parse(f"127.0.0.1:{_port(a)}")
        assert a.options is a.extra(HorizonAttribute.options)


async def test_send_and_receive_like_anyio(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        with anyio.fail_after(TIMEOUT):
            await b.sendto(b"hello", "127.0.0.1", _port(a))
            await b.send((b"world", ("127.0.0.1", _port(a))))
            assert await a.receive() == (b"hello", ("127.0.0.1", _port(b)))
            assert await a.receive() == (b"world", ("127.0.0.1", _port(b)))


async def test_code_written_for_anyio_works_unchanged(engine: str) -> None:
    async def echo_once(udp: UDPSocket) -> None:  # typed against anyio only
        data, address = await udp.receive()
        await udp.send((data.upper(), address))

    async with udp_pair(engine) as (a, b):
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(echo_once, a)
                await b.sendto(b"ping", "127.0.0.1", _port(a))
                assert await b.receive() == (b"PING", ("127.0.0.1", _port(a)))


async def test_async_iteration(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        for i in range(5):
            await b.sendto(b"%d" % i, "127.0.0.1", _port(a))
        seen = []
        with anyio.fail_after(TIMEOUT):
            async for data, address in a:
                assert address == ("127.0.0.1", _port(b))
                seen.append(data)
                if len(seen) == 5:
                    break
        assert seen == [b"0", b"1", b"2", b"3", b"4"]


async def test_closed_resource_error_after_close(engine: str) -> None:
    a, b = await _pair(engine)
    await b.aclose()
    await a.aclose()
    await a.aclose()  # idempotent
    batch = BufferPool(4, 64).batch(4)
    with pytest.raises(anyio.ClosedResourceError):
        await a.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await a.send((b"x", ("127.0.0.1", 9)))
    with pytest.raises(anyio.ClosedResourceError):
        await a.receive_batch(batch)
    with pytest.raises(anyio.ClosedResourceError):
        await a.send_batch([(b"x", ("127.0.0.1", 9))])
    with pytest.raises(anyio.ClosedResourceError):
        _ = a.local_address
    with pytest.raises(anyio.ClosedResourceError):
        async for _ in a:
            pass


async def test_busy_resource_error_on_concurrent_receive(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        batch = BufferPool(4, 64).batch(4)
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(a.receive)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await a.receive()
                with pytest.raises(anyio.BusyResourceError):
                    await a.receive_batch(batch)
                await b.sendto(b"release", "127.0.0.1", _port(a))
        assert len(batch) == 0
        assert batch.pool.counts()[SlotState.FREE] == 4


@pytest.mark.parametrize("kind", ["udp", "connected"])
async def test_port_is_free_right_after_aclose(kind: str, engine: str) -> None:
    # reuse_port/reuse_addr off: a plain socket binding the port proves nothing holds it (both
    # engines work on a duplicate descriptor, which aclose() must release too).
    config = NetConfig(reuse_port=False, reuse_addr=False)
    if kind == "udp":
        udp: HorizonUDPSocket | HorizonConnectedUDPSocket = await create_udp_socket(
            local_host="127.0.0.1",
            batch_engine=engine,  # type: ignore[arg-type]
            config=config,
        )
    else:
        udp = await create_connected_udp_socket(
            "127.0.0.1",
            9,
            local_host="127.0.0.1",
            batch_engine=engine,  # type: ignore[arg-type]
            config=config,
        )
    port = _port(udp)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocked, pytest.raises(OSError):
        blocked.bind(("127.0.0.1", port))
    await udp.aclose()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))


async def test_connected_socket(engine: str) -> None:
    async with (
        await create_udp_socket(local_host="127.0.0.1", config=None) as server,
        await create_connected_udp_socket(
            "127.0.0.1",
            _port(server),
            batch_engine=engine,  # type: ignore[arg-type]
            config=NetConfig(),
        ) as client,
    ):
        assert isinstance(client, ConnectedUDPSocket)
        assert client.extra(SocketAttribute.remote_address) == ("127.0.0.1", _port(server))
        assert client.extra(SocketAttribute.remote_port) == _port(server)
        with anyio.fail_after(TIMEOUT):
            await client.send(b"hi")
            data, address = await server.receive()
            assert data == b"hi"
            await server.send((b"back", address))
            assert await client.receive() == b"back"
            # batch send to the peer: address None
            assert await client.send_batch([(b"one", None), (b"two", None)]) == 2
            assert (await server.receive())[0] == b"one"
            assert (await server.receive())[0] == b"two"


async def test_connected_socket_reports_icmp_unreachable_as_broken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        port = gone.getsockname()[1]
    async with await create_connected_udp_socket("127.0.0.1", port, config=None) as client:
        with anyio.fail_after(TIMEOUT):
            await client.send(b"anyone?")
            with pytest.raises(anyio.BrokenResourceError) as info:
                await client.receive()
        assert isinstance(info.value.__cause__, ConnectionRefusedError)


# -- batches ---------------------------------------------------------------------------------


async def test_receive_batch_and_echo_with_send_batch(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        pool = BufferPool(64, 2048)
        batch = pool.batch(32)
        payloads = [b"datagram-%03d" % i * (i + 1) for i in range(20)]
        with anyio.fail_after(TIMEOUT):
            assert await b.send_batch([(p, ("127.0.0.1", _port(a))) for p in payloads]) == 20
            received: list[bytes] = []
            while len(received) < 20:
                n = await a.receive_batch(batch)
                assert 1 <= n <= 32
                assert n == len(batch)
                received += [bytes(d.payload) for d in batch]
                assert all(str(d.address) == f"127.0.0.1:{_port(b)}" for d in batch)
                sent = 0
                while sent < n:  # echo: the packed sender addresses are the destinations
                    sent += await a.send_batch(batch, sent)
                batch.release()
            assert received == payloads
            echoed: list[bytes] = []
            back = pool.batch(32)
            while len(echoed) < 20:
                await b.receive_batch(back)
                echoed += [bytes(d.payload) for d in back]
                back.release()
            assert echoed == payloads
        pool.check_invariants()
        assert pool.counts()[SlotState.FREE] == 64


async def test_batch_capacity_is_never_exceeded(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        await b.send_batch([(b"x", ("127.0.0.1", _port(a)))] * 10)
        batch = BufferPool(8, 64).batch(3)
        total = 0
        with anyio.fail_after(TIMEOUT):
            while total < 10:
                n = await a.receive_batch(batch)
                assert n <= 3
                total += n
                batch.release()


async def test_send_batch_start_and_empty(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        items = [(b"%d" % i, ("127.0.0.1", _port(a))) for i in range(4)]
        assert await b.send_batch(items, 2) == 2
        assert await b.send_batch(items, 4) == 0
        with pytest.raises(IndexError):
            await b.send_batch(items, 5)
        with anyio.fail_after(TIMEOUT):
            assert [(await a.receive())[0] for _ in range(2)] == [b"2", b"3"]


async def test_truncated_datagrams_are_flagged_with_true_length(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        await b.send_batch([(b"a" * 100, ("127.0.0.1", _port(a))), (b"b" * 10, ("127.0.0.1", _port(a)))])
        batch = BufferPool(4, 64).batch(4)
        got: list[tuple[bytes, bool, int]] = []
        with anyio.fail_after(TIMEOUT):
            while len(got) < 2:
                await a.receive_batch(batch)
                got += [(bytes(d.payload), d.truncated, d.original_length) for d in batch]
                batch.release()
        assert got == [(b"a" * 64, True, 100), (b"b" * 10, False, 10)]
        assert a.stats.truncated == 1


async def test_receive_batch_needs_an_empty_batch(engine: str) -> None:
    async with udp_pair(engine) as (a, _b):
        batch = BufferPool(4, 64).batch(4)
        batch.append(b"leftover")
        with pytest.raises((ValueError, RuntimeError)):
            await a.receive_batch(batch)
        assert len(batch) == 1


async def test_no_hidden_queue_limit(engine: str) -> None:
    # anyio's asyncio backend keeps at most 100 datagrams and silently drops the oldest; here the
    # kernel buffer (1 MiB asked) is the only buffer, so 500 small datagrams all arrive.
    async with udp_pair(engine) as (a, b):
        for start in range(0, 500, 50):
            await b.send_batch([(b"%d" % i, ("127.0.0.1", _port(a))) for i in range(start, start + 50)])
        await anyio.sleep(0.05)
        got: list[int] = []
        with anyio.fail_after(TIMEOUT):
            while len(got) < 500:
                got.append(int((await a.receive())[0]))
        assert got == list(range(500))
        assert a.stats.kernel_drops == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.binary(min_size=0, max_size=1400), min_size=1, max_size=40))
async def test_batches_keep_datagram_boundaries_and_bytes(engine: str, payloads: list[bytes]) -> None:
    async with udp_pair(engine) as (a, b):
        target = ("127.0.0.1", _port(a))
        sent = 0
        with anyio.fail_after(TIMEOUT):
            while sent < len(payloads):
                sent += await b.send_batch([(p, target) for p in payloads], sent)
            batch = BufferPool(64, 2048).batch(16)
            got: list[bytes] = []
            while len(got) < len(payloads):
                await a.receive_batch(batch)
                got += [bytes(d.payload) for d in batch]
                batch.release()
        assert got == payloads


# -- stats ---------------------------------------------------------------------------------


async def test_stats_count_both_paths(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        before = a.stats
        await b.send_batch([(b"12345", ("127.0.0.1", _port(a)))] * 4)
        with anyio.fail_after(TIMEOUT):
            await a.receive()
            batch = BufferPool(8, 64).batch(8)
            got = 1
            while got < 4:
                got += await a.receive_batch(batch)
                batch.release()
        delta = a.stats - before
        assert delta.datagrams_received == 4
        assert delta.bytes_received == 20
        assert b.stats.datagrams_sent == 4
        assert b.stats.bytes_sent == 20
        assert a.stats.kernel_drops == 0


async def test_kernel_drops_are_counted(engine: str) -> None:
    # A tiny receive buffer (forced when permitted, else clamped by the kernel) overflows.
    config = attrs.evolve(NetConfig(), recv_buf=2048, best_effort=frozenset({"recv_buf"}))
    async with (
        await create_udp_socket(
            local_host="127.0.0.1",
            batch_engine=engine,  # type: ignore[arg-type]
            config=config,
        ) as a,
        await create_udp_socket(local_host="127.0.0.1", config=None) as b,
    ):
        if a.options["rx_drop_counter"].status is not OptionStatus.APPLIED:
            pytest.skip("SO_RXQ_OVFL is not available here")
        target = ("127.0.0.1", _port(a))
        for _ in range(20):
            await b.send_batch([(b"z" * 1000, target)] * 50)
        batch = BufferPool(64, 2048).batch(64)
        with anyio.fail_after(TIMEOUT):
            # Drain what fitted: the kernel stamps the count on datagrams queued after a drop.
            with anyio.move_on_after(0.2):
                while True:
                    await a.receive_batch(batch)
                    batch.release()
            await b.sendto(b"after", *target)
            while True:
                await a.receive_batch(batch)
                if any(bytes(d.payload) == b"after" for d in batch):
                    break
                batch.release()
        drops = a.stats.kernel_drops
        assert drops is not None
        assert drops > 0


# -- options -------------------------------------------------------------------------------


async def test_options_are_applied_before_bind_and_read_back(engine: str) -> None:
    config = attrs.evolve(NetConfig(), recv_buf=512 * 1024, send_buf=256 * 1024, tos=0x10, ttl=33)
    async with await create_udp_socket(
        local_host="127.0.0.1",
        batch_engine=engine,  # type: ignore[arg-type]
        config=config,
    ) as udp:
        raw = udp.extra(SocketAttribute.raw_socket)
        report = udp.extra(HorizonAttribute.options)
        assert report["recv_buf"].effective == raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert report["send_buf"].effective == raw.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert report["tos"].effective == raw.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x10
        assert report["ttl"].effective == raw.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 33
        assert report["reuse_port"].effective == raw.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert report["recv_buf"].status in (OptionStatus.APPLIED, OptionStatus.ADJUSTED)
        assert udp.extra(HorizonAttribute.config) is config


async def test_reuse_port_is_off_unless_the_call_or_the_config_asks() -> None:
    async with await create_udp_socket(local_host="127.0.0.1") as plain:
        raw = plain.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    async with await create_udp_socket(local_host="127.0.0.1", reuse_port=True) as asked:
        raw = asked.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    async with await create_udp_socket(local_host="127.0.0.1", config=NetConfig()) as configured:
        raw = configured.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    config = NetConfig(reuse_port=False)
    async with await create_udp_socket(local_host="127.0.0.1", config=config) as udp:
        raw = udp.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        assert udp.config.reuse_port is False


async def test_bad_engine_name_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_engine"):
        await create_udp_socket(local_host="127.0.0.1", batch_engine="fast", config=None)  # type: ignore[arg-type]


async def test_names_are_resolved_without_blocking_the_loop() -> None:
    async with await create_udp_socket(local_host="localhost", family=socket.AF_INET, config=None) as a:
        assert a.extra(SocketAttribute.local_address)[0] == "127.0.0.1"
        async with await create_udp_socket(local_host="127.0.0.1", config=None) as b:
            with anyio.fail_after(TIMEOUT):
                await b.sendto(b"by name", "localhost", _port(a))
                assert (await a.receive())[0] == b"by name"


# -- IPv6 ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("ipv6")
async def test_ipv6_send_receive_and_batches(engine: str) -> None:
    a, b = await _pair(engine, "::1")
    async with a, b:
        assert a.extra(SocketAttribute.family) == socket.AF_INET6
        assert a.local_address.family == 6
        with anyio.fail_after(TIMEOUT):
            await b.sendto(b"six", "::1", _port(a))
            assert await a.receive() == (b"six", ("::1", _port(b)))
            await b.send_batch([(b"v6-%d" % i, ("::1", _port(a))) for i in range(5)])
            batch = BufferPool(8, 256).batch(8)
            got: list[tuple[bytes, str]] = []
            while len(got) < 5:
                await a.receive_batch(batch)
                got += [(bytes(d.payload), str(d.address)) for d in batch]
                await a.send_batch(batch)
                batch.release()
        assert got == [(b"v6-%d" % i, f"[::1]:{_port(b)}") for i in range(5)]
        with anyio.fail_after(TIMEOUT):
            back = [(await b.receive())[0] for _ in range(5)]
        assert back == [b"v6-%d" % i for i in range(5)]


@pytest.mark.usefixtures("ipv6")
async def test_ipv6_connected_socket() -> None:
    async with (
        await create_udp_socket(local_host="::1", config=None) as server,
        await create_connected_udp_socket("::1", _port(server), config=None) as client,
    ):
        assert client.extra(SocketAttribute.family) == socket.AF_INET6
        with anyio.fail_after(TIMEOUT):
            await client.send(b"over six")
            data, address = await server.receive()
            assert data == b"over six"
            assert address[0] == "::1"


@pytest.mark.usefixtures("ipv6")
async def test_dual_stack_socket_serves_ipv4_peers(engine: str) -> None:
    config = NetConfig(ipv6_only=False)
    async with (
        await create_udp_socket(
            family=socket.AF_INET6,
            batch_engine=engine,  # type: ignore[arg-type]
            config=config,
        ) as server,
        await create_udp_socket(local_host="127.0.0.1", config=None) as v4,
    ):
        assert server.options["ipv6_only"].effective == 0
        with anyio.fail_after(TIMEOUT):
            await v4.sendto(b"from v4", "127.0.0.1", _port(server))
            data, address = await server.receive()
            assert (data, address) == (b"from v4", ("::ffff:127.0.0.1", _port(v4)))
            await server.send((b"reply mapped", address))
            await server.send((b"reply plain", ("127.0.0.1", _port(v4))))  # mapped for us
            assert (await v4.receive())[0] == b"reply mapped"
            assert (await v4.receive())[0] == b"reply plain"
            await v4.sendto(b"batch", "127.0.0.1", _port(server))
            batch = BufferPool(4, 64).batch(4)
            await server.receive_batch(batch)
            assert batch.address(0) == SocketAddress.parse(f"[::ffff:127.0.0.1]:{_port(v4)}")
            await server.send_batch(batch)
            assert (await v4.receive())[0] == b"batch"
            await server.send_batch([(b"pair", f"127.0.0.1:{_port(v4)}")])
            assert (await v4.receive())[0] == b"pair"


async def test_large_batches_beyond_one_recvmmsg(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        a_port = _port(a)
        total = 3000
        pool = BufferPool(2048, 128)
        batch = pool.batch(2048)
        got = 0
        with anyio.fail_after(TIMEOUT * 2):
            async with anyio.create_task_group() as group:

                async def send_all() -> None:
                    for start in range(0, total, 100):
                        while start - got > 1000:  # stay within the receive buffer: no drops
                            await anyio.sleep(0.001)
                        items = [(b"%06d" % i, ("127.0.0.1", a_port)) for i in range(start, start + 100)]
                        done = 0
                        while done < len(items):
                            done += await b.send_batch(items, done)
                        await anyio.sleep(0)

                group.start_soon(send_all)
                expected = 0
                while got < total:
                    n = await a.receive_batch(batch)
                    for d in batch:
                        assert int(bytes(d.payload)) == expected
                        expected += 1
                    got += n
                    batch.release()
        assert got == total
        assert (a.stats.kernel_drops or 0) == 0


# -- GRO and the core's protocols ---------------------------------------------------------------


async def test_gro_buffers_split_for_receive_and_stay_whole_in_batches(engine: str) -> None:
    config = NetConfig(udp_gro=True)
    async with await create_udp_socket(
        local_host="127.0.0.1",
        batch_engine=engine,  # type: ignore[arg-type]
        config=config,
    ) as rx:
        if rx.options["udp_gro"].status is not OptionStatus.APPLIED:
            pytest.skip("UDP_GRO is not available here")
        # One GSO send of ten 100-byte segments and a 37-byte tail (UDP_SEGMENT = 103).
        payload = b"".join(bytes([65 + i]) * 100 for i in range(10)) + b"z" * 37
        segments = [payload[i : i + 100] for i in range(0, len(payload), 100)]
        target = ("127.0.0.1", _port(rx))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(3):
                tx.sendmsg([payload], [(17, 103, struct.pack("H", 100))], 0, target)
        with anyio.fail_after(TIMEOUT):
            got = [(await rx.receive())[0] for _ in range(11)]
            assert got == segments  # receive() returns datagrams, never a GRO buffer
            # The second buffer: its first segment was returned, the rest waits (in order)
            assert (await rx.receive())[0] == segments[0]
            batch = BufferPool(16, 4096).batch(16)
            assert await rx.receive_batch(batch) == 10
            assert [bytes(d.payload) for d in batch] == segments[1:]
            batch.release()
            assert await rx.receive_batch(batch) == 1
            assert batch.segment_size(0) == 100
            assert bytes(batch.payload(0)) == payload
            # Echoing the batch re-segments the buffer with UDP GSO.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
                sink.bind(("127.0.0.1", 0))
                sink.settimeout(TIMEOUT)
                address = SocketAddress.parse(f"127.0.0.1:{sink.getsockname()[1]}")
                address.pack_into(batch.pool.addresses, batch.slot(0) * 32)
                assert await rx.send_batch(batch) == 1
                assert [sink.recv(4096) for _ in range(11)] == segments
        assert rx.stats.datagrams_received == 33


async def test_sockets_implement_the_core_async_protocols() -> None:
    async with udp_pair("portable") as (a, _):
        assert isinstance(a, AsyncUdpSocket)
