"""NetConfig.spin_budget on the anyio driver: a receive that would wait polls first.

While the budget lasts, a receive retries at every pass of the event loop (a checkpoint between
tries) instead of sleeping on the socket; other tasks keep running meanwhile. After the budget it
waits for readiness as usual. A cancellation during the spin loses nothing. Runs on asyncio,
uvloop and trio (conftest).
"""

from __future__ import annotations

import socket

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute

from horizon_core.buffers import BufferPool
from horizon_core.config import NetConfig
from horizon_drivers.aio import (
    HorizonSocketStream,
    create_connected_udp_socket,
    create_udp_socket,
)
from horizon_drivers.aio import udp as aio_udp
from tests.drivers.aio.stream_helpers import CountingSocket, pair

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0
#: Long enough that no test outlasts it: such a receive spins until its bytes arrive.
LONG_SPIN = 1_000_000
#: Checkpoints the sending task takes before it sends: it can only get through them if the
#: spinning receiver lets the loop run other tasks.
SENDER_CHECKPOINTS = 20


class _CountingReadiness:
    """Wraps a stream's readiness and counts its waits for readability."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.waits = 0

    async def wait_readable(self) -> None:
        self.waits += 1
        await self._inner.wait_readable()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _instrument(stream: HorizonSocketStream) -> tuple[socket.socket, CountingSocket, _CountingReadiness]:
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    counting = CountingSocket(raw)
    readiness = _CountingReadiness(stream._readiness)
    stream._sock = counting  # type: ignore[assignment]
    stream._readiness = readiness  # type: ignore[assignment]
    return raw, counting, readiness


async def _send_after_checkpoints(client: HorizonSocketStream, data: bytes, passed: list[int]) -> None:
    for _ in range(SENDER_CHECKPOINTS):
        await anyio.lowlevel.checkpoint()
        passed[0] += 1
    await client.send(data)


@pytest.mark.parametrize("method", ["receive_into", "receive"])
async def test_a_spinning_receive_polls_while_other_tasks_run(method: str) -> None:
    async with pair(NetConfig(spin_budget=LONG_SPIN)) as (client, server):
        raw, counting, readiness = _instrument(server)
        buffer = bytearray(8)
        await client.send(b"x")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_readable(raw)
        assert await server.receive_into(buffer) == 1  # short: a plain config would wait next
        before = counting.reads
        passed = [0]
        async with anyio.create_task_group() as group:
            group.start_soon(_send_after_checkpoints, client, b"late", passed)
            with anyio.fail_after(TIMEOUT):
                if method == "receive":
                    data = await server.receive(8)
                else:
                    data = bytes(buffer[: await server.receive_into(buffer)])
        assert data == b"late"[: len(data)]
        assert passed[0] == SENDER_CHECKPOINTS  # the sender ran while the receiver spun
        assert readiness.waits == 0  # polled, never slept on the socket
        assert counting.reads - before > 1  # tried, found nothing, tried again


async def test_without_a_spin_budget_the_receive_waits() -> None:
    async with pair(NetConfig()) as (client, server):
        _raw, _counting, readiness = _instrument(server)
        buffer = bytearray(8)
        passed = [0]
        async with anyio.create_task_group() as group:
            group.start_soon(_send_after_checkpoints, client, b"late", passed)
            with anyio.fail_after(TIMEOUT):
                n = await server.receive_into(buffer)
        assert bytes(buffer[:n]) == b"late"[:n]
        assert readiness.waits >= 1


async def test_after_the_budget_the_receive_waits() -> None:
    async with pair(NetConfig(spin_budget=1)) as (client, server):
        _raw, counting, readiness = _instrument(server)
        buffer = bytearray(8)
        async with anyio.create_task_group() as group:

            async def send_later() -> None:
                await anyio.sleep(0.05)  # far longer than the 1 µs budget
                await client.send(b"late")

            group.start_soon(send_later)
            with anyio.fail_after(TIMEOUT):
                n = await server.receive_into(buffer)
        assert bytes(buffer[:n]) == b"late"[:n]
        assert readiness.waits >= 1  # the spin ended; the receive slept until the bytes came
        # A spin that never ended would have retried for all of the 50 ms.
        assert counting.reads < 50


async def test_a_cancelled_spinning_receive_loses_nothing() -> None:
    async with pair(NetConfig(spin_budget=LONG_SPIN)) as (client, server):
        buffer = bytearray(8)
        with anyio.move_on_after(0.02) as scope:
            await server.receive_into(buffer)  # spins: nothing arrives
        assert scope.cancelled_caught
        await client.send(b"after")
        with anyio.fail_after(TIMEOUT):
            n = await server.receive_into(buffer)
        assert bytes(buffer[:n]) == b"after"[:n]


@pytest.fixture
def udp_waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the UDP socket's waits for readability."""
    waits = [0]
    inner = aio_udp._wait_readable

    async def counting(sock: socket.socket) -> None:
        waits[0] += 1
        await inner(sock)

    monkeypatch.setattr(aio_udp, "_wait_readable", counting)
    return waits


@pytest.mark.parametrize("method", ["receive", "receive_batch"])
@pytest.mark.parametrize("spin_budget", [LONG_SPIN, None])
async def test_udp_receives_spin_only_with_a_budget(
    udp_waits: list[int], spin_budget: int | None, method: str
) -> None:
    config = NetConfig(spin_budget=spin_budget)
    async with await create_udp_socket(local_host="127.0.0.1", config=config) as server:
        port = server.local_address.port
        async with await create_connected_udp_socket("127.0.0.1", port) as client:
            passed = [0]

            async def send_later() -> None:
                for _ in range(SENDER_CHECKPOINTS):
                    await anyio.lowlevel.checkpoint()
                    passed[0] += 1
                await client.send(b"ping")

            async with anyio.create_task_group() as group:
                group.start_soon(send_later)
                with anyio.fail_after(TIMEOUT):
                    if method == "receive":
                        data, _ = await server.receive()
                    else:
                        batch = BufferPool(4, 2048).batch(4)
                        assert await server.receive_batch(batch) == 1
                        data = bytes(batch.payload(0))
                        batch.release()
        assert data == b"ping"
        assert passed[0] == SENDER_CHECKPOINTS
        if spin_budget:
            assert udp_waits[0] == 0
        else:
            assert udp_waits[0] >= 1
