"""The portable UDP socket beyond the contract suite: both truncation modes, control messages,
the kept-error rule, stats, and sending from a Batch."""

from __future__ import annotations

import errno
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_core.events import Interest
from horizon_core.options import OptionReport
from horizon_drivers import portable
from horizon_drivers.portable import TRUNCATION_MODE, UdpSocket

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def wait_readable(sock: UdpSocket, timeout: float = 2.0) -> None:
    with portable.runtime() as rt:
        rt.register(sock, Interest.READABLE)
        assert rt.poll_once(timeout), "nothing arrived"


@pytest.fixture
def pair() -> Iterator[tuple[UdpSocket, UdpSocket]]:
    with portable.bind_udp("127.0.0.1:0") as a, portable.bind_udp("127.0.0.1:0") as b:
        yield a, b


def test_truncation_mode_is_msg_trunc_on_linux() -> None:
    assert ("msg_trunc" if sys.platform.startswith("linux") else "bounce") == TRUNCATION_MODE


@pytest.mark.parametrize("mode", ["msg_trunc", "bounce"] if sys.platform.startswith("linux") else ["bounce"])
@pytest.mark.parametrize("slot_size", [1, 16, 65536])
def test_both_truncation_modes_report_true_length(mode: str, slot_size: int) -> None:
    with portable.bind_udp("127.0.0.1:0") as sender:
        raw, report = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), OptionReport(())
        raw.bind(("127.0.0.1", 0))
        with UdpSocket(raw, report, truncation_mode=mode) as receiver:  # type: ignore[arg-type]
            sizes = [0, 1, 15, 16, 17, 3000, 65507]
            for n in sizes:
                sender.send_to(bytes(i % 251 for i in range(n)), receiver.local_address)
            wait_readable(receiver)
            batch = BufferPool(8, slot_size).batch(8)
            got: list[tuple[bytes, bool, int, SocketAddress | None]] = []
            while len(got) < len(sizes):
                try:
                    receiver.recv_batch(batch)
                except BlockingIOError:
                    wait_readable(receiver)
                    continue
                got += [(bytes(d.payload), d.truncated, d.original_length, d.address) for d in batch]
                batch.release()
            for (payload, truncated, original, address), n in zip(got, sizes, strict=True):
                assert original == n
                assert truncated == (n > slot_size)
                assert payload == bytes(i % 251 for i in range(min(n, slot_size)))
                assert address == sender.local_address
            assert receiver.stats.truncated == sum(n > slot_size for n in sizes)


def test_unknown_truncation_mode_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="truncation_mode"):
            UdpSocket(raw, OptionReport(()), truncation_mode="guess")  # type: ignore[arg-type]


def test_a_stream_socket_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as raw, pytest.raises(ValueError):
        UdpSocket(raw, OptionReport(()))


@linux_only
def test_gro_segment_size_is_reported() -> None:
    with portable.bind_udp("127.0.0.1:0", NetConfig(udp_gro=True)) as receiver, portable.bind_udp(
        "127.0.0.1:0", NetConfig(udp_gso_segment=100)
    ) as sender:
        sender.send_to(b"g" * 450, receiver.local_address)  # UDP_SEGMENT cuts 5 datagrams
        wait_readable(receiver)
        batch = BufferPool(8, 2048).batch(8)
        time.sleep(0.01)
        n = receiver.recv_batch(batch)
        datagrams = list(batch)
        # Coalesced by GRO or not, iterating yields the five datagrams the sender's GSO cut.
        assert [bytes(d.payload) for d in datagrams] == [b"g" * 100] * 4 + [b"g" * 50]
        assert batch.datagram_count == 5
        if n == 1:  # coalesced: one slot of 450 bytes, and the stride tells where datagrams end
            assert len(batch.payload(0)) == 450
            assert batch.segment_size(0) == 100
            assert all(d.segment_size == 100 for d in datagrams)
        else:
            assert all(d.segment_size == 0 for d in datagrams)


@linux_only
def test_kernel_drops_are_counted() -> None:
    config = NetConfig(recv_buf=2048, best_effort=frozenset({"recv_buf"}))
    with portable.bind_udp("127.0.0.1:0", config) as receiver, portable.bind_udp(
        "127.0.0.1:0"
    ) as sender:
        assert receiver.stats.kernel_drops == 0  # counting, nothing dropped yet
        for _ in range(300):
            sender.send_to(b"x" * 200, receiver.local_address)
        batch = BufferPool(64, 256).batch(64)

        def drain() -> None:
            while True:
                try:
                    receiver.recv_batch(batch)
                except BlockingIOError:
                    return
                batch.release()

        wait_readable(receiver)
        drain()
        # The count rides on datagrams queued after the drops (socket(7)): send one more.
        sender.send_to(b"after", receiver.local_address)
        wait_readable(receiver)
        drain()
        drops = receiver.stats.kernel_drops
        assert drops is not None
        assert drops > 0


class _ScriptedSocket:
    """A datagram socket whose receives follow a script: payloads, then an error."""

    type = socket.SOCK_DGRAM
    family = socket.AF_INET

    def __init__(self, script: list[bytes | OSError]) -> None:
        self.script = script

    def setblocking(self, flag: bool) -> None:
        pass

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 4000)

    def _next(self) -> bytes:
        if not self.script:
            raise BlockingIOError(errno.EAGAIN, "empty")
        item = self.script.pop(0)
        if isinstance(item, OSError):
            raise item
        return item

    def recvmsg_into(self, buffers: list[memoryview], anc: int, flags: int) -> tuple[Any, ...]:
        data = self._next()
        n = min(len(data), len(buffers[0]))
        buffers[0][:n] = data[:n]
        return len(data), [], 0, ("127.0.0.2", 5)

    def recvfrom_into(self, buffer: memoryview) -> tuple[int, tuple[str, int]]:
        data = self._next()
        n = min(len(data), len(buffer))
        buffer[:n] = data[:n]
        return n, ("127.0.0.2", 5)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("mode", ["msg_trunc", "bounce"])
def test_an_error_after_some_datagrams_is_raised_by_the_next_call(mode: str) -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    fake = _ScriptedSocket([b"one", b"two", refused, b"three"])
    sock = UdpSocket(fake, OptionReport(()), truncation_mode=mode)  # type: ignore[arg-type]
    batch = BufferPool(8, 64).batch(8)
    assert sock.recv_batch(batch) == 2
    assert [bytes(d.payload) for d in batch] == [b"one", b"two"]
    assert batch.address(0) == SocketAddress.parse("127.0.0.2:5")
    batch.release()
    with pytest.raises(ConnectionRefusedError):
        sock.recv_batch(batch)
    assert batch.pool.counts()[SlotState.FREE] == 8
    assert sock.recv_batch(batch) == 1
    assert sock.stats.errors == 1
    assert sock.stats.datagrams_received == 3


def test_send_batch_from_a_batch_and_from_an_offset(pair: tuple[UdpSocket, UdpSocket]) -> None:
    a, b = pair
    out = BufferPool(4, 64).batch(4)
    for word in (b"w0", b"w1", b"w2", b"w3"):
        out.append(word, b.local_address)
    assert a.send_batch(out, start=1) == 3
    wait_readable(b)
    time.sleep(0.01)
    got = BufferPool(8, 64).batch(8)
    assert b.recv_batch(got) == 3
    assert [bytes(d.payload) for d in got] == [b"w1", b"w2", b"w3"]
    snapshot = a.stats
    assert (snapshot.datagrams_sent, snapshot.send_calls, snapshot.bytes_sent) == (3, 1, 6)
    assert a.send_batch([], 0) == 0
    with pytest.raises(IndexError, match="start"):
        a.send_batch(out, start=-1)


def test_send_batch_stops_at_an_error_after_progress(pair: tuple[UdpSocket, UdpSocket]) -> None:
    a, b = pair
    # The third datagram is too long for UDP: two go, the error waits for a call that sends none.
    pairs = [(b"ok", b.local_address), (b"ok", b.local_address), (b"x" * 70000, b.local_address)]
    assert a.send_batch(pairs) == 2
    with pytest.raises(OSError) as info:
        a.send_batch(pairs, start=2)
    assert info.value.errno == errno.EMSGSIZE
    assert a.stats.partial_sends == 2
    assert a.stats.errors == 1


def test_cached_destinations_never_admit_an_equal_invalid_address(pair: tuple[UdpSocket, UdpSocket]) -> None:
    a, b = pair
    port = b.local_address.port
    assert a.send_batch([(b"ok", ("127.0.0.1", port))]) == 1
    # Equal to the tuple above (9.0 == 9, True == 1) but not an address: refused, cache or not.
    with pytest.raises(ValueError, match="port"):
        a.send_batch([(b"no", ("127.0.0.1", float(port)))])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="port"):
        a.send_to(b"no", ("127.0.0.1", float(port)))  # type: ignore[arg-type]


def test_dual_stack_sends_to_plain_ipv4() -> None:
    with portable.bind_udp_dual_stack(0) as server, portable.bind_udp("127.0.0.1:0") as client:
        server.send_to(b"hi", client.local_address)
        wait_readable(client)
        buf = bytearray(8)
        n, sender = client.recv_from(buf)
        assert bytes(buf[:n]) == b"hi"
        assert sender.port == server.local_address.port


def test_ipv4_socket_accepts_v4_mapped_destinations(pair: tuple[UdpSocket, UdpSocket]) -> None:
    a, b = pair
    mapped = b.local_address.to_v4_mapped()
    assert a.send_to(b"m", mapped) == 1
    wait_readable(b)
    assert b.recv_from(bytearray(4))[1] == a.local_address


def test_closed_socket_keeps_its_report_and_address(pair: tuple[UdpSocket, UdpSocket]) -> None:
    a, _ = pair
    address = a.local_address
    a.close()
    assert a.local_address == address
    assert "recv_buf" in a.options
    assert "closed" in repr(a)
    assert a.fileno() == -1
    with pytest.raises(OSError) as info:
        a.send_to(b"x", address)
    assert info.value.errno == errno.EBADF


@linux_only
def test_drop_counter_switched_off_reports_none() -> None:
    with portable.bind_udp("127.0.0.1:0", NetConfig(rx_drop_counter=False)) as sock:
        assert sock.options["SO_RXQ_OVFL"].requested == 0
        assert sock.stats.kernel_drops is None


def test_a_datagram_to_the_other_family_is_an_eafnosupport_oserror() -> None:
    with portable.bind_udp("127.0.0.1:0") as a, portable.bind_udp("127.0.0.1:0") as b:
        with pytest.raises(OSError, match=r"\[::1\]:9.*IPv4") as info:
            a.send_to(b"x", "[::1]:9")
        assert info.value.errno == errno.EAFNOSUPPORT
        # What went before the bad datagram stays sent, and the count says so.
        assert a.send_batch([(b"1", b.local_address), (b"2", "[::1]:9"), (b"3", b.local_address)]) == 1
        with pytest.raises(OSError) as first:
            a.send_batch([(b"2", "[::1]:9")])
        assert first.value.errno == errno.EAFNOSUPPORT
        with pytest.raises(OSError) as connecting:
            a.connect("[::1]:9")
        assert connecting.value.errno == errno.EAFNOSUPPORT
