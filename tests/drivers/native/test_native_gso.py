"""Batch sends coalesce into UDP GSO messages: the same datagrams arrive, in fewer kernel trips.

A receiver with UDP_GRO on gets each GSO message whole (one buffer and its segment size), so it
shows exactly how a batch was grouped; a plain receiver shows that nothing else changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.drivers.native.native_helpers import wait_readable  # first: skips off Linux

# isort: split
from horizon_core.addresses import SocketAddress
from horizon_core.buffers import Batch, BufferPool
from horizon_core.config import NetConfig
from horizon_core.options import OptionStatus
from horizon_drivers.native import UdpSocket

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def sockets() -> Iterator[Callable[..., UdpSocket]]:
    with ExitStack() as stack:

        def make(config: NetConfig | None = None) -> UdpSocket:
            return stack.enter_context(UdpSocket.bind("127.0.0.1:0", config))

        yield make


def gro_receiver(sockets: Callable[..., UdpSocket]) -> UdpSocket:
    sock = sockets(NetConfig(udp_gro=True, recv_buf=4 * 1024 * 1024))
    if sock.options["udp_gro"].status is not OptionStatus.APPLIED:
        pytest.skip(f"UDP_GRO: {sock.options['udp_gro'].reason}")
    return sock


def receive(sock: UdpSocket, total_bytes: int) -> list[tuple[bytes, int]]:
    """Receive buffers until ``total_bytes`` arrived (bounded): (payload, GRO segment size)."""
    pool = BufferPool(64, 65536)
    batch = pool.batch(64)
    got: list[tuple[bytes, int]] = []
    for _ in range(200):  # bounded: every wait returns at least one buffer or fails
        if sum(len(p) for p, _ in got) >= total_bytes and got:
            break
        wait_readable(sock)
        sock.recv_batch(batch)
        got.extend((bytes(batch.payload(i)), batch.segment_size(i)) for i in range(len(batch)))
        batch.release()
    return got


def shapes(buffers: list[tuple[bytes, int]]) -> list[tuple[int, int]]:
    return [(len(payload), segment) for payload, segment in buffers]


def as_batch(datagrams: list[tuple[bytes, SocketAddress]]) -> Batch:
    pool = BufferPool(max(len(datagrams), 1), 65536)
    batch = pool.batch(pool.slot_count)
    for payload, address in datagrams:
        batch.append(payload, address)
    return batch


@pytest.mark.parametrize("form", ["pairs", "batch"])
def test_a_run_to_one_peer_leaves_as_one_gso_message(
    sockets: Callable[..., UdpSocket], form: str
) -> None:
    rx, tx = gro_receiver(sockets), sockets()
    datagrams = [(bytes([i]) * 100, rx.local_address) for i in range(10)]
    assert tx.gso_max_segment > 0
    assert tx.send_batch(datagrams if form == "pairs" else as_batch(datagrams)) == 10
    stats = tx.stats
    assert (stats.datagrams_sent, stats.bytes_sent, stats.send_calls) == (10, 1000, 1)
    assert stats.partial_sends == 0
    got = receive(rx, 1000)
    assert shapes(got) == [(1000, 100)]
    assert got[0][0] == b"".join(payload for payload, _ in datagrams)
    assert rx.stats.datagrams_received == 10


def test_runs_break_where_one_gso_message_cannot_carry_them(
    sockets: Callable[..., UdpSocket],
) -> None:
    a, b, tx = gro_receiver(sockets), gro_receiver(sockets), sockets()
    to_a, to_b = a.local_address, b.local_address
    datagrams = [
        (b"1" * 100, to_a), (b"2" * 100, to_a), (b"3" * 100, to_a),
        (b"4" * 50, to_a),  # shorter: allowed as a run's last segment, and it ends the run
        (b"5" * 100, to_a),  # alone: the next goes elsewhere
        (b"6" * 100, to_b),
        (b"", to_a),  # GSO has no segment size 0
        (b"7" * 150, to_a), (b"8" * 100, to_a),  # shorter again: the last of its run
        (b"9" * 120, to_a),  # longer than the run's segments: a new run
    ]
    assert tx.send_batch(datagrams) == len(datagrams)
    assert tx.stats.datagrams_sent == len(datagrams)
    assert shapes(receive(b, 100)) == [(100, 0)]
    got_a = receive(a, sum(len(p) for p, to in datagrams if to == to_a))
    assert shapes(got_a) == [(350, 100), (100, 0), (0, 0), (250, 150), (120, 0)]
    assert b"".join(p for p, _ in got_a) == b"".join(p for p, to in datagrams if to == to_a)


def test_segment_and_byte_limits_split_long_runs(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = gro_receiver(sockets), sockets()
    small = [(b"s" * 10, rx.local_address)] * 150
    assert tx.send_batch(small) == 150
    assert shapes(receive(rx, 1500)) == [(640, 10), (640, 10), (220, 10)]  # 64 segments a send
    large = [(b"L" * 30000, rx.local_address)] * 3
    assert tx.send_batch(large) == 3
    assert shapes(receive(rx, 90000)) == [(60000, 30000), (30000, 0)]  # 65,507 bytes a send


def test_plain_receivers_get_every_datagram_as_sent(sockets: Callable[..., UdpSocket]) -> None:
    a, b, tx = sockets(), sockets(), sockets()
    datagrams = [
        (bytes([i % 7]) * size, a.local_address if i % 5 else b.local_address)
        for i, size in enumerate([64] * 20 + [10, 64, 64, 0, 64, 65000, 3] + [200] * 80)
    ]
    sent = 0
    for _ in range(len(datagrams)):  # bounded: each call sends at least one
        if sent == len(datagrams):
            break
        sent += tx.send_batch(datagrams, sent)
    assert sent == len(datagrams)
    for rx in (a, b):
        expected = [p for p, to in datagrams if to == rx.local_address]
        got = receive(rx, sum(len(p) for p in expected))
        assert [p for p, _ in got] == expected
        assert {segment for _, segment in got} == {0}


def test_config_turns_coalescing_off(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = gro_receiver(sockets), sockets(NetConfig(udp_gso_batch=False))
    assert tx.gso_max_segment == 0
    assert tx.send_batch([(b"x" * 100, rx.local_address)] * 10) == 10
    assert tx.stats.send_calls == 1
    assert shapes(receive(rx, 1000)) == [(100, 0)] * 10


# A network namespace whose loopback has an Ethernet MTU: a GSO segment larger than it is
# refused (GSO never fragments), while a plain datagram that large is fragmented as usual.
_SMALL_MTU_SCRIPT = textwrap.dedent(
    """
    import json, select
    from horizon_core.buffers import Batch, BufferPool
    from horizon_core.config import NetConfig
    from horizon_drivers.native import UdpSocket

    def receive(sock, count):
        pool = BufferPool(16, 65536)
        batch = pool.batch(16)
        got = []
        for _ in range(50):
            if len(got) >= count:
                break
            if not select.select([sock.fileno()], [], [], 5)[0]:
                break
            sock.recv_batch(batch)
            got += [(len(batch.payload(i)), batch.segment_size(i)) for i in range(len(batch))]
            batch.release()
        return got

    rx = UdpSocket.bind("127.0.0.1:0", NetConfig(udp_gro=True))
    tx = UdpSocket.bind("127.0.0.1:0")
    out = {"limit_before": tx.gso_max_segment}
    out["sent_large"] = tx.send_batch([(b"L" * 2000, rx.local_address)] * 3)
    out["limit_after"] = tx.gso_max_segment
    out["got_large"] = receive(rx, 3)
    out["sent_small"] = tx.send_batch([(b"s" * 1000, rx.local_address)] * 3)
    out["got_small"] = receive(rx, 1)
    stats = tx.stats
    out["datagrams_sent"], out["errors"] = stats.datagrams_sent, stats.errors
    print(json.dumps(out))
    """
)


@pytest.mark.timeout(60)
def test_a_path_that_refuses_the_segment_size_gets_plain_datagrams() -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare(1) and ip(8) to make a network namespace")
    command = [
        "unshare", "--net", "sh", "-c",
        f'ip link set lo mtu 1500 up && exec "{sys.executable}" -c "$0"', _SMALL_MTU_SCRIPT,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=50, env=env, check=False)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip(f"cannot create a network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["limit_before"] > 2000
    assert out["sent_large"] == 3  # refused as GSO, then sent plain (and fragmented)
    assert out["limit_after"] == 1999
    assert out["got_large"] == [[2000, 0]] * 3
    assert out["sent_small"] == 3
    assert out["got_small"] == [[3000, 1000]]  # still coalesced below the limit
    assert (out["datagrams_sent"], out["errors"]) == (6, 0)


def test_iterating_a_gro_batch_yields_each_datagram_with_its_sender(
    sockets: Callable[..., UdpSocket],
) -> None:
    rx, tx = gro_receiver(sockets), sockets()
    sizes = [200] * 10 + [4]  # a GSO run: equal segments, the last shorter
    datagrams = [(bytes([i]) * size, rx.local_address) for i, size in enumerate(sizes)]
    assert tx.send_batch(datagrams) == len(sizes)
    batch = BufferPool(8, 65536).batch(8)
    with batch:
        for _ in range(100):  # bounded: each wait returns at least one buffer or fails
            wait_readable(rx)
            rx.recv_batch(batch)
            if batch.datagram_count >= len(sizes):
                break
        assert len(batch) == 1, "the kernel delivered the run as one GRO buffer"
        assert batch.segment_size(0) == 200
        assert batch.datagram_count == len(sizes) == rx.stats.datagrams_received
        got = list(batch)
        assert [bytes(d.payload) for d in got] == [payload for payload, _ in datagrams]
        assert {d.address for d in got} == {tx.local_address}
        assert not any(d.truncated for d in got)
    assert len(batch) == 0  # the with block released it
