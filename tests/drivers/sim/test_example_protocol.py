"""The worked example of docs/sim-example.md: property-testing a request/response protocol.

A client asks a server to compute ``answer(value)`` over UDP. Each request carries an id; the
client retries after a timeout. The network loses, duplicates, delays and reorders datagrams.
The safety property: every result the client returns is the answer to *its own* request.
The buggy client skips the id check, so a late reply to an earlier request can be taken as the
reply to the current one; hypothesis finds that and shrinks it to a two-request case.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horizon_core.contract import Runtime, UdpSocket
from horizon_core.events import Interest
from horizon_core.faults import FaultPlan
from horizon_drivers.sim import SimNetwork

# -- the protocol under test ------------------------------------------------------------------

MESSAGE = struct.Struct("!II")  # request id, then the value (request) or the result (reply)


def answer(value: int) -> int:
    """What the server computes."""
    return (2 * value + 1) % 2**32


class Server:
    """Answers every request it reads, duplicates included (the computation is idempotent)."""

    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock

    def handle(self) -> None:
        buf = bytearray(64)
        while True:
            try:
                n, peer = self.sock.recv_from(buf)
            except BlockingIOError:
                return
            if n == MESSAGE.size:
                request_id, value = MESSAGE.unpack_from(buf)
                self.sock.send_to(MESSAGE.pack(request_id, answer(value)), peer)


class Client:
    """Sends ``(id, value)`` and waits for the reply, retrying ``attempts`` times.

    The client and the server share one runtime, as everything in a simulation runs on one
    loop: while the client waits, the server's events are dispatched to it.
    """

    def __init__(
        self,
        sock: UdpSocket,
        server: Server,
        runtime: Runtime,
        now: Callable[[], float],
        *,
        check_ids: bool,
        timeout: float = 0.1,
        attempts: int = 5,
    ) -> None:
        self.sock = sock
        self.server = server
        self.runtime = runtime
        self.now = now
        self.check_ids = check_ids
        self.timeout = timeout
        self.attempts = attempts
        self.next_id = 0
        self.client_token = runtime.register(sock, Interest.READABLE)
        self.server_token = runtime.register(server.sock, Interest.READABLE)

    def call(self, value: int) -> int:
        self.next_id += 1
        request_id = self.next_id
        request = MESSAGE.pack(request_id, value)
        for _ in range(self.attempts):
            self.sock.send_to(request, self.server.sock.local_address)
            deadline = self.now() + self.timeout
            while (remaining := deadline - self.now()) > 0:
                for event in self.runtime.poll_once(remaining):
                    if event.token == self.server_token:
                        self.server.handle()
                    elif event.token == self.client_token:
                        result = self.read_reply(request_id)
                        if result is not None:
                            return result
        raise TimeoutError(f"no reply to request {request_id} after {self.attempts} attempts")

    def read_reply(self, request_id: int) -> int | None:
        buf = bytearray(64)
        while True:
            try:
                n = self.sock.recv_into(buf)
            except BlockingIOError:
                return None
            if n != MESSAGE.size:
                continue
            reply_id, result = MESSAGE.unpack_from(buf)
            assert isinstance(result, int)
            # THE BUG: without this check a stale reply answers the current request.
            if reply_id == request_id or not self.check_ids:
                return result


# -- the network and the property ---------------------------------------------------------------

LOSSY = FaultPlan(
    loss=0.2,
    duplication=0.1,
    reordering=0.3,
    reorder_delay=(0.0, 0.3),  # up to 3 timeouts late: replies overtake each other
    latency=(0.005, 0.02),
)


def run_session(seed: int, values: list[int], *, check_ids: bool) -> list[int | None]:
    """One client making ``values`` calls in turn; None where a call timed out."""
    net = SimNetwork(seed=seed, faults=LOSSY)
    client_host = net.add_host("10.0.0.1")
    server_host = net.add_host("10.0.0.2")
    server = Server(server_host.bind_udp("10.0.0.2:7"))
    client = Client(
        client_host.bind_udp("10.0.0.1:0"),
        server,
        client_host.runtime(),
        lambda: net.now,
        check_ids=check_ids,
    )
    results: list[int | None] = []
    for value in values:
        try:
            results.append(client.call(value))
        except TimeoutError:
            results.append(None)  # giving up is allowed; a wrong answer is not
    net.check_invariants()
    return results


def protocol_property(*, check_ids: bool) -> Callable[[], None]:
    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(
        seed=st.integers(0, 2**32 - 1),
        values=st.lists(st.integers(0, 2**32 - 1), max_size=8),
    )
    def every_result_answers_its_own_request(seed: int, values: list[int]) -> None:
        results = run_session(seed, values, check_ids=check_ids)
        for value, result in zip(values, results, strict=True):
            assert result is None or result == answer(value), (
                f"stale reply: asked {value}, got {result} (the answer to {(result - 1) // 2})"
            )

    return every_result_answers_its_own_request


def test_the_correct_client_passes() -> None:
    protocol_property(check_ids=True)()


def test_the_buggy_client_is_caught_and_shrunk() -> None:
    with pytest.raises(AssertionError, match="stale reply") as info:
        protocol_property(check_ids=False)()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    # Hypothesis words it "Falsifying example" (< 6.16x) or "Failing test case" (newer).
    assert "Falsifying example" in notes or "Failing test case" in notes
    # The shrunk case: two calls whose answers differ are enough for a stale reply to show.
    assert "values=[0, 1]" in notes


def test_sessions_replay_from_their_seed() -> None:
    values = [5, 6, 7, 8]
    assert run_session(3, values, check_ids=False) == run_session(3, values, check_ids=False)
