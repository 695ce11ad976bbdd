"""Zero-copy sends (MSG_ZEROCOPY) on the native driver, on loopback.

Loopback always copies in the end (the receiving socket cannot keep the sender's pages), so the
kernel reports every completion as "copied": these tests check correctness (bytes, completions,
buffer lifetimes, close, fallback), never speed.
"""

from __future__ import annotations

import gc
import select
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.drivers.native.native_helpers import (  # first: it skips this module off Linux
    WAIT,
    wait_readable,
    wait_writable,
)

# isort: split
from horizon_core.addresses import SocketAddress
from horizon_core.buffers import Batch, BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_core.errors import PoolExhaustedError, SocketClosedError
from horizon_core.events import Interest
from horizon_core.options import OptionStatus
from horizon_drivers.native import Runtime, TcpListener, TcpStream, UdpSocket

THRESHOLD = 16384
ZEROCOPY = NetConfig(zerocopy_threshold=THRESHOLD)


def _pair(config: NetConfig = ZEROCOPY) -> tuple[TcpListener, TcpStream, TcpStream]:
    listener = TcpListener.bind("127.0.0.1:0", config)
    client = TcpStream.connect(listener.local_address, config)
    wait_readable(listener)
    server, _ = listener.accept_nonblocking()
    wait_writable(client)
    assert client.finish_connect()
    return listener, client, server


@pytest.fixture
def pair() -> Iterator[tuple[TcpStream, TcpStream]]:
    listener, client, server = _pair()
    try:
        yield client, server
    finally:
        for each in (client, server, listener):
            each.close()


def _reap_all(sock: TcpStream | UdpSocket) -> None:
    """Read completions until none is in flight: a bounded wait, not a timed assertion."""
    deadline = time.monotonic() + WAIT
    for _ in range(10_000):
        sock.reap_zerocopy()
        if not sock.zerocopy_in_flight or time.monotonic() > deadline:
            break
        select.select([], [], [sock], 0.01)  # queued completions raise POLLERR
    assert sock.zerocopy_in_flight == 0, "zero-copy completions did not arrive"


def _drain(sock: TcpStream, into: bytearray, expected: int) -> None:
    buffer = bytearray(1 << 20)
    deadline = time.monotonic() + WAIT
    while len(into) < expected:
        assert time.monotonic() < deadline, f"received {len(into)} of {expected} bytes"
        try:
            n = sock.recv_into(buffer)
        except BlockingIOError:
            wait_readable(sock)
            continue
        assert n > 0, "the peer closed early"
        into += buffer[:n]


def test_the_native_sockets_apply_so_zerocopy_and_a_listener_reports_it_skipped() -> None:
    listener, client, server = _pair()
    with listener, client, server, UdpSocket.bind("127.0.0.1:0", ZEROCOPY) as udp:
        for sock in (client, server, udp):
            outcome = sock.options["zerocopy_threshold"]
            assert (outcome.status, outcome.name, outcome.effective) == (
                OptionStatus.APPLIED, "SO_ZEROCOPY", 1
            )
        skipped = listener.options["zerocopy_threshold"]
        assert skipped.status is OptionStatus.SKIPPED
        assert skipped.reason == "not for TCP listeners"


def test_zero_copy_is_off_by_default() -> None:
    listener, client, server = _pair(NetConfig())
    with listener, client, server:
        client.send(bytes(THRESHOLD * 4))
        assert client.zerocopy_in_flight == 0
        assert client.reap_zerocopy() == 0
        assert client.stats.zerocopy_sends == 0
        assert "zerocopy_threshold" not in client.options
        with pytest.raises(RuntimeError, match="zero-copy sends are off"):
            client._inject_zerocopy_enobufs()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(
        st.one_of(st.integers(1, 1000), st.integers(THRESHOLD, 4 * THRESHOLD)),
        min_size=1,
        max_size=12,
    ),
    vectored=st.lists(st.booleans(), min_size=12, max_size=12),
    seed=st.integers(0, 255),
)
def test_bytes_survive_any_chunking_with_zero_copy_on(
    pair: tuple[TcpStream, TcpStream], chunks: list[int], vectored: list[bool], seed: int
) -> None:
    client, server = pair
    before = client.stats
    sent = bytearray()
    received = bytearray()
    for index, size in enumerate(chunks):
        chunk = bytes((seed + index + i) % 251 for i in range(size))
        view = memoryview(chunk)
        while view:
            try:
                if vectored[index]:
                    half = len(view) // 2
                    n = client.send_vectored([view[:half], view[half:]])
                else:
                    n = client.send(view)
            except BlockingIOError:
                _drain(server, received, len(received) + 1)
                continue
            sent += view[:n]
            view = view[n:]
    _drain(server, received, len(sent))
    assert received == sent
    _reap_all(client)
    delta = client.stats - before
    # Every zero-copy send was completed, and loopback reports each one copied.
    assert delta.zerocopy_completions == delta.zerocopy_sends
    assert delta.zerocopy_copied == delta.zerocopy_sends
    if max(chunks) >= THRESHOLD:
        assert delta.zerocopy_sends > 0
    assert delta.bytes_sent == len(sent)


def test_completions_are_never_lost_over_many_sends(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    payload = bytes(range(256)) * (THRESHOLD // 256)
    received = bytearray()
    total = 0
    for _ in range(300):
        try:
            total += client.send(payload)
        except BlockingIOError:
            _drain(server, received, len(received) + 1)
    _drain(server, received, total)
    _reap_all(client)
    stats = client.stats
    assert stats.zerocopy_sends >= 100
    assert stats.zerocopy_completions == stats.zerocopy_sends
    assert stats.zerocopy_copied == stats.zerocopy_sends  # loopback copies
    assert stats.zerocopy_abandoned == 0


def test_a_held_bytearray_cannot_be_resized_until_its_completion(
    pair: tuple[TcpStream, TcpStream],
) -> None:
    client, server = pair
    data = bytearray(THRESHOLD * 2)
    assert client.send(data) > 0
    assert client.zerocopy_in_flight == 1
    with pytest.raises(BufferError):
        data.extend(b"x")  # the kernel may still read it: its memory must not move
    _drain(server, bytearray(), len(data))
    _reap_all(client)
    data.extend(b"x")  # released with the completion


def test_enobufs_falls_back_to_a_copying_send_and_is_counted(
    pair: tuple[TcpStream, TcpStream],
) -> None:
    client, server = pair
    client._inject_zerocopy_enobufs(2)
    payload = bytes(range(256)) * (THRESHOLD // 256)
    assert client.send(payload) == len(payload)
    assert client.send_vectored([payload[:100], payload[100:]]) == len(payload)
    stats = client.stats
    assert (stats.zerocopy_fallbacks, stats.zerocopy_sends) == (2, 0)
    assert client.zerocopy_in_flight == 0
    received = bytearray()
    _drain(server, received, 2 * len(payload))
    assert received == payload * 2
    client.send(payload)  # the hook is spent: zero-copy again
    assert client.stats.zerocopy_sends == 1


def test_closing_with_sends_in_flight_counts_them_and_does_not_crash() -> None:
    small = NetConfig(zerocopy_threshold=THRESHOLD, recv_buf=64 * 1024, send_buf=64 * 1024)
    listener, client, server = _pair(small)
    payload = bytes(THRESHOLD)
    baseline = sys.getrefcount(payload)
    # The peer reads nothing: the last sends stay unacknowledged in the send queue, so their
    # completions cannot have arrived.
    for _ in range(10_000):
        try:
            client.send(payload)
        except BlockingIOError:
            break
    else:
        pytest.fail("the send queue never filled")
    client.reap_zerocopy()
    in_flight = client.zerocopy_in_flight
    assert in_flight > 0
    client.close()
    stats = client.stats
    assert stats.zerocopy_abandoned > 0
    assert stats.zerocopy_completions + stats.zerocopy_abandoned == stats.zerocopy_sends
    assert client.zerocopy_in_flight == 0
    assert sys.getrefcount(payload) == baseline  # every hold was let go: nothing leaks
    with pytest.raises(SocketClosedError):
        client.reap_zerocopy()
    with pytest.raises(SocketClosedError):
        client.send(payload)
    client.close()  # idempotent
    server.close()
    listener.close()


def test_the_runtime_reads_completions_on_epollerr(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    payload = bytes(THRESHOLD * 2)
    with Runtime() as runtime:
        token = runtime.register(client, Interest.READABLE)
        client.send(payload)
        _drain(server, bytearray(), len(payload))
        for _ in range(500):
            events = runtime.poll_once(0.01)
            # Completions alone raised EPOLLERR: the runtime read them and delivered nothing.
            assert all(event.token != token for event in events), events
            if not client.zerocopy_in_flight:
                break
        assert client.zerocopy_in_flight == 0
        assert client.stats.zerocopy_completions == 1


# -- UDP: GSO batches from a BufferPool ------------------------------------------------------


def _udp_pair() -> tuple[UdpSocket, UdpSocket]:
    sender = UdpSocket.bind("127.0.0.1:0", NetConfig(zerocopy_threshold=8192))
    receiver = UdpSocket.bind("127.0.0.1:0", NetConfig(recv_buf=4 * 1024 * 1024))
    return sender, receiver


def _filled_batch(target: SocketAddress) -> tuple[BufferPool, Batch]:
    """A 64-slot batch of 1,400-byte datagrams to ``target``: one GSO run past any threshold."""
    pool = BufferPool(64, 2048)
    batch = pool.batch(64)
    for i in range(64):
        batch.append(bytes([i]) * 1400, target)
    return pool, batch


def _receive(receiver: UdpSocket, count: int) -> list[bytes]:
    pool = BufferPool(64, 2048)
    got: list[bytes] = []
    deadline = time.monotonic() + WAIT
    with pool.batch(64) as batch:
        while len(got) < count:
            assert time.monotonic() < deadline, f"received {len(got)} of {count} datagrams"
            try:
                receiver.recv_batch(batch)
            except BlockingIOError:
                wait_readable(receiver)
                continue
            got += [bytes(d.payload) for d in batch]
            batch.release()
    return got


@settings(max_examples=15, deadline=None)
@given(count=st.integers(2, 64), size=st.integers(600, 1472), seed=st.integers(0, 255))
def test_udp_gso_zero_copy_slots_are_never_reused_before_their_completion(
    count: int, size: int, seed: int
) -> None:
    sender, receiver = _udp_pair()
    with sender, receiver:
        pool = BufferPool(count, 2048)
        batch = pool.batch(count)
        payloads = [bytes([(seed + i) % 256]) * size for i in range(count)]
        for payload in payloads:
            batch.append(payload, receiver.local_address)
        sent = sender.send_batch(batch)
        assert sent == count
        lent = sender.zerocopy_in_flight
        batch.release()
        if lent:
            # Completions are queued but not read yet: every sent slot is still the kernel's.
            free = pool.counts()[SlotState.FREE]
            assert free < count
            held = {slot for slot in range(count) if pool.kernel_holds[slot]}
            for _ in range(free):
                index = batch.append(b"reuse", receiver.local_address)
                assert batch.slot(index) not in held
            with pytest.raises(PoolExhaustedError):
                batch.append(b"reuse", receiver.local_address)
            batch.release()
        assert _receive(receiver, count) == payloads
        _reap_all(sender)
        assert pool.counts()[SlotState.FREE] == count
        assert pool.lent == 0
        pool.check_invariants()
        stats = sender.stats
        assert stats.zerocopy_completions == stats.zerocopy_sends == lent
        assert stats.zerocopy_copied == stats.zerocopy_sends


def test_udp_large_gso_runs_go_zero_copy_and_pairs_copy() -> None:
    sender, receiver = _udp_pair()
    with sender, receiver:
        pool, batch = _filled_batch(receiver.local_address)
        with batch:
            assert sender.send_batch(batch) == 64
        assert sender.stats.zerocopy_sends > 0
        before = sender.stats.zerocopy_sends
        pairs = [(bytes([i]) * 1400, receiver.local_address) for i in range(64)]
        assert sender.send_batch(pairs) == 64
        assert sender.stats.zerocopy_sends == before  # caller-owned buffers are copied
        assert len(_receive(receiver, 128)) == 128
        _reap_all(sender)
        assert pool.counts()[SlotState.FREE] == 64


def test_udp_enobufs_falls_back_and_close_returns_the_slots() -> None:
    sender, receiver = _udp_pair()
    with receiver:
        pool, batch = _filled_batch(receiver.local_address)
        sender._inject_zerocopy_enobufs(1)
        assert sender.send_batch(batch) == 64
        assert (sender.stats.zerocopy_fallbacks, sender.stats.zerocopy_sends) == (1, 0)
        assert sender.send_batch(batch) == 64  # zero-copy this time
        batch.release()
        assert sender.zerocopy_in_flight > 0
        sender.close()  # reads what is queued; anything else is abandoned and given back
        stats = sender.stats
        assert stats.zerocopy_completions + stats.zerocopy_abandoned == stats.zerocopy_sends
        assert pool.counts()[SlotState.FREE] == 64
        assert pool.lent == 0
        pool.free_batch(batch)
        pool.check_invariants()
        assert len(_receive(receiver, 128)) == 128


# -- the ledger: id ranges that wrap past 2**32 and arrive coalesced, in any order -------------


@settings(max_examples=200, deadline=None)
@given(
    start=st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 40, 2**32 - 1)),
    count=st.integers(1, 40),
    data=st.data(),
)
def test_the_ledger_completes_each_send_once_whatever_the_ranges(
    start: int, count: int, data: st.DataObject
) -> None:
    from horizon_drivers.native.linux.descriptor import ZerocopyLedger

    ledger = ZerocopyLedger(1)
    ledger._test_start_at(start)
    for i in range(count):
        ledger._test_record(memoryview(bytes([i % 256])))
    # The kernel coalesces consecutive completions into inclusive ranges; cut the ids into
    # ranges and deliver them in any order (UDP completions need not be ordered).
    cuts = sorted(data.draw(st.sets(st.integers(1, count - 1), max_size=count - 1))) if count > 1 else []
    bounds = [0, *cuts, count]
    ranges = [(bounds[k], bounds[k + 1] - 1) for k in range(len(bounds) - 1)]
    order = data.draw(st.permutations(ranges))
    copied = data.draw(st.booleans())
    for first, last in order:
        ledger._test_complete((start + first) % 2**32, (start + last) % 2**32, copied)
    assert ledger.in_flight == 0
    assert ledger.completions == ledger.sends == count
    assert ledger.copied == (count if copied else 0)
    # A repeated or foreign range completes nothing twice.
    ledger._test_complete(start, (start + count - 1) % 2**32, False)
    ledger._test_complete(0, 2**32 - 1, False)
    assert ledger.completions == count


def test_a_socket_dropped_without_close_gives_its_pool_slots_back() -> None:
    sender, receiver = _udp_pair()
    with receiver:
        pool, batch = _filled_batch(receiver.local_address)
        assert sender.send_batch(batch) == 64
        assert sender.zerocopy_in_flight > 0
        batch.release()
        del sender
        gc.collect()
        assert pool.lent == 0
        assert pool.counts()[SlotState.FREE] == 64
        pool.check_invariants()
