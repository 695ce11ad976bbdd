"""Copied vs zero-copy sends of the native driver on loopback: what MSG_ZEROCOPY costs there.

Loopback always copies in the end (the receiving socket cannot keep the sender's pages), so this
measures the price of the zero-copy bookkeeping (pinning, completions, error-queue reads) where
it cannot pay off. One thread sends and receives in turn; medians of interleaved rounds.

    python docs/zerocopy_loopback.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

from horizon_core.buffers import BufferPool
from horizon_core.config import MiB, NetConfig
from horizon_drivers.native import TcpListener, TcpStream, UdpSocket


def udp_gso(threshold: int | None, seconds: float) -> tuple[float, float]:
    """Datagrams/s of 64-datagram GSO batches of 1400 bytes; zero-copy sends per send call."""
    sender = UdpSocket.bind("127.0.0.1:0", NetConfig(zerocopy_threshold=threshold, send_buf=4 * MiB))
    receiver = UdpSocket.bind("127.0.0.1:0", NetConfig(recv_buf=8 * MiB, udp_gro=True))
    out, into = BufferPool(64, 2048), BufferPool(64, 65536)
    batch, inbox = out.batch(64), into.batch(64)
    for i in range(64):
        batch.append(bytes([i]) * 1400, receiver.local_address)
    received = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        with contextlib.suppress(BlockingIOError):
            sender.send_batch(batch)
        sender.reap_zerocopy()
        for _ in range(8):
            try:
                receiver.recv_batch(inbox)
            except BlockingIOError:
                break
            received += inbox.datagram_count
            inbox.release()
    elapsed = time.perf_counter() - start
    stats = sender.stats
    for sock in (sender, receiver):
        sock.close()
    # Each GSO message of a zero-copy sendmmsg is one zero-copy send.
    share = stats.zerocopy_sends / stats.send_calls if stats.send_calls else 0.0
    return received / elapsed, share


def tcp_stream(threshold: int | None, seconds: float) -> tuple[float, float]:
    """MB/s of one stream of 64 KiB sends; zero-copy sends per send call."""
    config = NetConfig(zerocopy_threshold=threshold)
    listener = TcpListener.bind("127.0.0.1:0", config)
    client = TcpStream.connect(listener.local_address, config)
    server = None
    for _ in range(1000):
        try:
            server, _ = listener.accept_nonblocking()
            break
        except BlockingIOError:
            time.sleep(0.001)
    assert server is not None, "no connection"
    payload, buffer = bytes(64 * 1024), bytearray(1 << 20)
    received = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        with contextlib.suppress(BlockingIOError):
            client.send(payload)
        client.reap_zerocopy()
        for _ in range(8):
            try:
                received += server.recv_into(buffer)
            except BlockingIOError:
                break
    elapsed = time.perf_counter() - start
    stats = client.stats
    for sock in (client, server, listener):
        sock.close()
    share = stats.zerocopy_sends / stats.send_calls if stats.send_calls else 0.0
    return received / elapsed / 1e6, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases: list[tuple[str, str, Callable[[int | None, float], tuple[float, float]], int | None]] = [
        ("UDP 1400 B, GSO batches of 64", "dgram/s", udp_gso, None),
        ("UDP 1400 B, GSO batches of 64", "dgram/s", udp_gso, 8192),
        # On, but no run is that large: every send copied, at full run length (the cost of the
        # bookkeeping alone).
        ("UDP 1400 B, GSO batches of 64", "dgram/s", udp_gso, 2**30),
        ("TCP 64 KiB sends", "MB/s", tcp_stream, None),
        ("TCP 64 KiB sends", "MB/s", tcp_stream, 16384),
    ]
    results: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(cases))}
    for _ in range(args.rounds):
        for i, (_, _, run, threshold) in enumerate(cases):
            results[i].append(run(threshold, args.seconds))
    print("| send | zerocopy_threshold | median | unit | zero-copy sends per call |")
    print("|---|---|---|---|---|")
    for i, (name, unit, _, threshold) in enumerate(cases):
        rate = statistics.median(r for r, _ in results[i])
        share = statistics.median(s for _, s in results[i])
        print(f"| {name} | {threshold} | {rate:,.0f} | {unit} | {share:.2f} |")


if __name__ == "__main__":
    main()
