"""Steady-state echo allocates no Python object per datagram (sys.getallocatedblocks, no timing)."""

from __future__ import annotations

import gc
import sys
from contextlib import ExitStack

from tests.drivers.native.native_helpers import WAIT  # first: it skips this module off Linux

# isort: split
from horizon_core.buffers import Batch, BufferPool
from horizon_core.events import Interest
from horizon_drivers.native import Runtime, UdpSocket

PEERS = 4
PER_PEER = 64
TOTAL = 100_000


def _receive(sock: UdpSocket, batch: Batch, rt: Runtime, expected: int) -> None:
    """Receive ``expected`` datagrams into ``batch`` and release them; waits are bounded."""
    got = 0
    while got < expected:
        try:
            got += sock.recv_batch(batch)
        except BlockingIOError:
            assert rt.poll_once(WAIT), "datagrams went missing"
            continue
        batch.release()


def test_echo_of_100k_datagrams_allocates_nothing_per_datagram() -> None:
    with ExitStack() as stack:
        rt = stack.enter_context(Runtime())
        server = stack.enter_context(UdpSocket.bind("127.0.0.1:0"))
        peers = [stack.enter_context(UdpSocket.bind("127.0.0.1:0")) for _ in range(PEERS)]
        # One runtime per receiver so each wait is for that socket only.
        peer_rts = [stack.enter_context(Runtime()) for _ in peers]
        rt.register(server, Interest.READABLE)
        for peer, peer_rt in zip(peers, peer_rts, strict=True):
            peer_rt.register(peer, Interest.READABLE)
        server_batch = BufferPool(PEERS * PER_PEER, 256).batch(PEERS * PER_PEER)
        outgoing = []
        incoming = []
        for _ in peers:
            out = BufferPool(PER_PEER, 256).batch(PER_PEER)
            for i in range(PER_PEER):
                out.append(i.to_bytes(4, "big") * 16, server.local_address)
            outgoing.append(out)
            incoming.append(BufferPool(PER_PEER, 256).batch(PER_PEER))

        def one_round() -> int:
            for peer, out in zip(peers, outgoing, strict=True):
                assert peer.send_batch(out) == PER_PEER  # the composed batch is reused as is
            echoed = 0
            while echoed < PEERS * PER_PEER:
                try:
                    n = server.recv_batch(server_batch)
                except BlockingIOError:
                    assert rt.poll_once(WAIT), "datagrams went missing"
                    continue
                sent = 0
                while sent < n:
                    sent += server.send_batch(server_batch, sent)
                server_batch.release()
                echoed += n
            for peer, peer_rt, into in zip(peers, peer_rts, incoming, strict=True):
                _receive(peer, into, peer_rt, PER_PEER)
            return echoed

        for _ in range(20):  # warm up: caches, free lists, first-use allocations
            one_round()
        gc.collect()
        before = sys.getallocatedblocks()
        echoed = 0
        while echoed < TOTAL:
            echoed += one_round()
        gc.collect()
        growth = sys.getallocatedblocks() - before
        assert server.stats.datagrams_sent >= TOTAL
        # Less than 1 block per 1,000 datagrams.
        assert growth < TOTAL // 1000, f"{growth} blocks for {echoed} datagrams"
