"""UDP properties, for every driver.

* Datagrams arrive byte-identical, with their boundaries and their sender's true address; nothing
  is invented (once all arrived, the next receive would block).
* A datagram longer than its slot is flagged truncated with its true length, its prefix intact.
* A batch never reports more than its capacity; nothing waiting means BlockingIOError.
* Dual-stack sockets serve IPv4 and IPv6 peers; connected sockets report ICMP refusals.

Datagrams are compared as multisets: loopback keeps order in practice, but the contract promises
boundaries, bytes and senders, not order.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import BufferPool, SlotState
from horizon_core.contract import UdpSocket
from horizon_core.events import Interest
from horizon_core.strategies import payloads
from tests.contract.contract_profiles import contract_settings
from tests.contract.drivers_under_test import FAMILIES, LOOPBACK, UNDER_WINE, DriverUnderTest, Net

SLOT = 9216  # large enough for every payload the first property draws

send_modes = st.sampled_from(["send_to", "pairs", "batch"])


def send_all(net: Net, sock: UdpSocket, messages: list[tuple[bytes, SocketAddress]], mode: str) -> None:
    """Send every message with ``mode``, resuming after partial batch sends (bounded)."""
    if mode == "send_to":
        for payload, address in messages:
            sent = net.retry(partial(sock.send_to, payload, address), sock, Interest.WRITABLE, "send_to")
            assert sent == len(payload)
        return
    if mode == "batch":
        pool = BufferPool(max(1, len(messages)), SLOT)
        outgoing = pool.batch(max(1, len(messages)))
        for payload, address in messages:
            outgoing.append(payload, address)
        datagrams: object = outgoing
    else:
        datagrams = list(messages)
    start = 0
    while start < len(messages):
        n = net.retry(
            partial(sock.send_batch, datagrams, start),  # type: ignore[arg-type]
            sock,
            Interest.WRITABLE,
            "send_batch",
        )
        assert 1 <= n <= len(messages) - start, f"send_batch sent {n} of {len(messages) - start}"
        start += n
    if mode == "batch":
        outgoing.release()


@contract_settings(examples=60)
@given(
    family=st.sampled_from(FAMILIES),
    senders=st.integers(1, 3),
    messages=st.lists(st.tuples(st.integers(0, 2), payloads(max_size=SLOT)), min_size=1, max_size=24),
    capacity=st.integers(1, 16),
    mode=send_modes,
)
def test_datagrams_arrive_byte_identical_with_boundaries_and_true_sender(
    dut: DriverUnderTest,
    family: int,
    senders: int,
    messages: list[tuple[int, bytes]],
    capacity: int,
    mode: str,
) -> None:
    with dut.net() as net:
        receiver = net.udp(LOOPBACK[family])
        sources = [net.udp(LOOPBACK[family]) for _ in range(senders)]
        before = receiver.stats
        expected: Counter[tuple[bytes, SocketAddress]] = Counter()
        for sender_index in range(senders):
            mine = [p for i, p in messages if i % senders == sender_index]
            sender = sources[sender_index]
            send_all(net, sender, [(p, receiver.local_address) for p in mine], mode)
            expected.update((p, sender.local_address) for p in mine)
        total = sum(expected.values())

        batch = BufferPool(capacity * 2, SLOT).batch(capacity)
        got = net.receive(receiver, batch, total)
        assert Counter((r.payload, r.address) for r in got) == expected
        assert not any(r.truncated for r in got)
        assert all(r.original_length == len(r.payload) for r in got)

        net.settle()
        with pytest.raises(BlockingIOError):  # nothing invented, nothing duplicated
            receiver.recv_batch(batch)
        assert len(batch) == 0
        assert batch.pool.counts()[SlotState.FREE] == batch.pool.slot_count
        delta = receiver.stats - before
        assert delta.datagrams_received == total
        assert delta.bytes_received == sum(len(p) * c for (p, _), c in expected.items())


def exactly(n: int) -> st.SearchStrategy[bytes]:
    """Payloads of exactly ``n`` bytes: a short random pattern, tiled (cheap for hypothesis)."""
    if n == 0:
        return st.just(b"")
    return st.binary(min_size=1, max_size=16).map(lambda p: (p * (n // len(p) + 1))[:n])


@contract_settings(examples=50)
@given(
    slot_size=st.sampled_from([1, 7, 64, 512, 1500]),
    lengths=st.lists(st.integers(0, 4000), min_size=1, max_size=12),
    near=st.lists(st.sampled_from([-1, 0, 1]), max_size=3),
    data=st.data(),
)
def test_truncation_is_flagged_with_true_length_and_intact_prefix(
    dut: DriverUnderTest,
    slot_size: int,
    lengths: list[int],
    near: list[int],
    data: st.DataObject,
) -> None:
    # Lean on the boundary: lengths just below, at and just above the slot.
    lengths = lengths + [slot_size + d for d in near]
    sent = [data.draw(exactly(n), label=f"payload of {n}") for n in lengths]
    with dut.net() as net:
        receiver, sender = net.udp(), net.udp()
        before = receiver.stats
        send_all(net, sender, [(p, receiver.local_address) for p in sent], "send_to")
        batch = BufferPool(8, slot_size).batch(8)
        got = net.receive(receiver, batch, len(sent))
        expected = Counter((p[:slot_size], len(p) > slot_size, len(p)) for p in sent)
        assert Counter((r.payload, r.truncated, r.original_length) for r in got) == expected
        assert all(r.address == sender.local_address for r in got)
        truncated = sum(len(p) > slot_size for p in sent)
        assert (receiver.stats - before).truncated == truncated


@contract_settings(examples=25)
@given(count=st.integers(1, 40), capacity=st.integers(1, 8))
def test_a_batch_never_reports_more_than_its_capacity(
    dut: DriverUnderTest, count: int, capacity: int
) -> None:
    with dut.net() as net:
        receiver, sender = net.udp(), net.udp()
        send_all(net, sender, [(bytes([i % 256]), receiver.local_address) for i in range(count)], "pairs")
        # Slots before and after the batch's run must stay untouched.
        pool = BufferPool(capacity + 2, 64)
        _guard = pool.batch(1)
        batch = pool.batch(capacity)
        got = net.receive(receiver, batch, count)
        assert sorted(r.payload for r in got) == sorted(bytes([i % 256]) for i in range(count))
        assert pool.state(0) == SlotState.FREE
        assert len(_guard) == 0


def test_nothing_waiting_is_blocking_io_error_and_leaves_the_batch_free(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        sock = net.udp()
        batch = BufferPool(4, 64).batch(4)
        with pytest.raises(BlockingIOError):
            sock.recv_batch(batch)
        assert batch.pool.counts()[SlotState.FREE] == 4
        assert len(batch) == 0
        with pytest.raises(BlockingIOError):
            sock.recv_from(bytearray(64))
        assert (sock.stats.would_block) >= 1


def test_a_batch_still_holding_datagrams_is_refused(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        receiver, sender = net.udp(), net.udp()
        send_all(net, sender, [(b"one", receiver.local_address)], "send_to")
        batch = BufferPool(4, 64).batch(4)
        n = net.retry(lambda: receiver.recv_batch(batch), receiver, Interest.READABLE, "recv")
        assert n == 1
        with pytest.raises((ValueError, RuntimeError)):  # SlotStateError is a RuntimeError
            receiver.recv_batch(batch)
        assert bytes(batch.payload(0)) == b"one"


@contract_settings(examples=25)
@given(v4=payloads(max_size=1400), v6=payloads(max_size=1400))
def test_dual_stack_serves_ipv4_and_ipv6_peers(dut: DriverUnderTest, v4: bytes, v6: bytes) -> None:
    assume(6 in FAMILIES)
    v4, v6 = b"4" + v4, b"6" + v6
    with dut.net() as net:
        server = net.own(net.driver.bind_udp_dual_stack(0))
        assert server.local_address.family == 6
        port = server.local_address.port
        a, b = net.udp("127.0.0.1:0"), net.udp("[::1]:0")
        send_all(net, a, [(v4, SocketAddress.parse(f"127.0.0.1:{port}"))], "send_to")
        send_all(net, b, [(v6, SocketAddress.parse(f"[::1]:{port}"))], "send_to")
        got = {r.payload: r.address for r in net.receive(server, BufferPool(4, 2048).batch(4), 2)}
        assert set(got) == {v4, v6}
        v4_sender = got[v4]
        assert v4_sender is not None
        assert v4_sender.unmapped() == a.local_address
        assert got[v6] == b.local_address
        # Replies: to the address as received (v4-mapped) and to the plain IPv4 address.
        send_all(net, server, [(b"mapped", v4_sender), (b"plain", a.local_address)], "pairs")
        replies = net.receive(a, BufferPool(2, 64).batch(2), 2)
        assert sorted(r.payload for r in replies) == [b"mapped", b"plain"]
        assert all(r.address == SocketAddress.parse(f"127.0.0.1:{port}") for r in replies)


def test_connected_udp_sends_receives_and_reports_refusal(dut: DriverUnderTest) -> None:
    if not dut.connected_udp:
        pytest.skip(
            f"{dut.id}: anyio has no connect() on a bound socket "
            "(create_connected_udp_socket is tested in tests/drivers/aio)"
        )
    with dut.net() as net:
        a, b = net.udp(), net.udp()
        a.connect(b.local_address)
        b.connect(a.local_address)
        assert net.retry(lambda: a.send(b"hello"), a, Interest.WRITABLE, "send") == 5
        buf = bytearray(64)
        n = net.retry(lambda: b.recv_into(buf), b, Interest.READABLE, "recv_into")
        assert bytes(buf[:n]) == b"hello"

        gone = net.udp()
        address = gone.local_address
        net.close_source(gone)
        a.connect(address)
        a.send(b"anyone?")
        if UNDER_WINE and dut.id != "iocp":
            # Wine delivers ICMP errors only to overlapped receives (the iocp driver sees them); a
            # non-overlapped recv never does (docs/windows.md), where Windows raises
            # WSAECONNRESET (the portable driver reports it as ConnectionRefusedError). Under
            # Wine: no datagram and no other error may arrive; the refusal may or may not.
            with pytest.raises((ConnectionRefusedError, AssertionError)) as caught:
                net.retry(lambda: a.recv_into(buf), a, Interest.READABLE, "refusal", timeout=1.0)
            if caught.type is AssertionError:
                assert "refusal still would block" in str(caught.value), caught.value
            return
        with pytest.raises(ConnectionRefusedError):
            net.retry(lambda: a.recv_into(buf), a, Interest.READABLE, "ICMP port unreachable")
