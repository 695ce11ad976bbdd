"""Cancellation and close while a receive waits: nothing lost, nothing half-received, no hang."""

from __future__ import annotations

import random
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute

from horizon_core.buffers import BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_drivers.aio import HorizonUDPSocket, create_udp_socket

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0


@asynccontextmanager
async def udp_pair(engine: str) -> AsyncIterator[tuple[HorizonUDPSocket, HorizonUDPSocket]]:
    config = NetConfig(recv_buf=4 * 1024 * 1024)
    a = await create_udp_socket(local_host="127.0.0.1", batch_engine=engine, config=config)  # type: ignore[arg-type]
    b = await create_udp_socket(local_host="127.0.0.1", batch_engine=engine, config=config)  # type: ignore[arg-type]
    async with a, b:
        yield a, b


def _port(udp: HorizonUDPSocket) -> int:
    return udp.extra(SocketAttribute.local_port)


def _datagram(seq: int, rng: random.Random) -> bytes:
    body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
    head = seq.to_bytes(4, "big") + zlib.crc32(body).to_bytes(4, "big")
    return head + body


def _check(data: bytes) -> int:
    seq = int.from_bytes(data[:4], "big")
    assert zlib.crc32(data[8:]) == int.from_bytes(data[4:8], "big"), f"datagram {seq} is damaged"
    return seq


# -- close during a receive --------------------------------------------------------------------


@pytest.mark.parametrize("call", ["receive", "receive_batch", "iteration"])
async def test_close_during_receive_raises_closed_resource_error(engine: str, call: str) -> None:
    async with udp_pair(engine) as (a, _):
        outcome: list[BaseException] = []
        batch = BufferPool(8, 64).batch(8)

        async def waiter() -> None:
            try:
                if call == "receive":
                    await a.receive()
                elif call == "receive_batch":
                    await a.receive_batch(batch)
                else:
                    async for _ in a:
                        pass
            except BaseException as exc:
                outcome.append(exc)
                raise

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:

                async def guarded() -> None:
                    with pytest.raises(anyio.ClosedResourceError):
                        await waiter()

                group.start_soon(guarded)
                await anyio.wait_all_tasks_blocked()
                await a.aclose()
        assert len(outcome) == 1
        assert isinstance(outcome[0], anyio.ClosedResourceError)
        assert batch.pool.counts()[SlotState.FREE] == 8  # no slot left POSTED


# -- cancellation during a receive ---------------------------------------------------------------


async def test_cancelled_receive_loses_nothing(engine: str) -> None:
    async with udp_pair(engine) as (a, b):
        with anyio.fail_after(TIMEOUT):
            with anyio.move_on_after(0.05) as scope:
                await a.receive()
            assert scope.cancelled_caught
            batch = BufferPool(8, 64).batch(8)
            with anyio.move_on_after(0.05) as scope:
                await a.receive_batch(batch)
            assert scope.cancelled_caught
            assert len(batch) == 0
            assert batch.pool.counts()[SlotState.FREE] == 8
            for word in (b"one", b"two", b"three"):
                await b.sendto(word, "127.0.0.1", _port(a))
            assert [(await a.receive())[0] for _ in range(3)] == [b"one", b"two", b"three"]


@pytest.mark.parametrize("call", ["receive", "receive_batch"])
async def test_random_cancellation_loses_and_splits_nothing(engine: str, call: str) -> None:
    total = 1500
    rng = random.Random(1234)
    payloads = [_datagram(seq, rng) for seq in range(total)]
    async with udp_pair(engine) as (a, b):
        target = ("127.0.0.1", _port(a))
        received: list[int] = []
        cancelled = 0
        pool = BufferPool(64, 2048)
        batch = pool.batch(16)

        async def send_all() -> None:
            sent = 0
            while sent < total:
                while sent - len(received) > 400:  # stay inside the receive buffer
                    await anyio.sleep(0.0005)
                chunk = payloads[sent : sent + rng.randrange(1, 40)]
                done = 0
                while done < len(chunk):
                    done += await b.send_batch([(p, target) for p in chunk], done)
                sent += len(chunk)
                await anyio.sleep(rng.choice((0, 0, 0.0002, 0.001)))

        with anyio.fail_after(TIMEOUT * 3):
            async with anyio.create_task_group() as group:
                group.start_soon(send_all)
                while len(received) < total:
                    with anyio.move_on_after(rng.choice((0, 0.00005, 0.0002, 0.001, 0.01))) as scope:
                        if call == "receive":
                            data, _ = await a.receive()
                            received.append(_check(data))
                        else:
                            await a.receive_batch(batch)
                            received.extend(_check(bytes(d.payload)) for d in batch)
                            batch.release()
                    if scope.cancelled_caught:
                        cancelled += 1
                        # Cancelled before anything was taken: the batch never holds a datagram.
                        assert len(batch) == 0
                        assert pool.counts()[SlotState.POSTED] == 0
        assert received == list(range(total))
        assert cancelled > 0
        assert a.stats.kernel_drops == 0
        pool.check_invariants()


async def test_foreign_asyncio_cancellation_takes_nothing(engine: str, anyio_backend_name: str) -> None:
    # A bare asyncio Task.cancel() bypasses anyio's scopes; it can still only land at the
    # checkpoint before the receive, so both datagrams stay in the kernel for the next receive.
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio-specific: trio has no foreign cancellation")
    import asyncio

    async with udp_pair(engine) as (a, b):
        for word in (b"keep me", b"second"):
            await b.sendto(word, "127.0.0.1", _port(a))
        await anyio.sleep(0.05)  # both are in the kernel's buffer now
        with anyio.fail_after(TIMEOUT):
            for call in ("receive", "receive_batch"):
                batch = BufferPool(4, 64).batch(4)
                coroutine = a.receive() if call == "receive" else a.receive_batch(batch)
                task = asyncio.ensure_future(coroutine)
                await asyncio.sleep(0)  # the task starts and parks at its checkpoint
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert len(batch) == 0
            assert (await a.receive())[0] == b"keep me"
            assert (await a.receive())[0] == b"second"
