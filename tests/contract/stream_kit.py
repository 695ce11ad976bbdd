"""A conformance kit for byte streams, after trio's ``check_two_way_stream``.

:func:`check_two_way_stream` takes two connected :class:`~horizon_core.contract.TcpStream` ends
and something that can wait for readiness, and checks, for the transfer plan it is given:

* bytes arrive identical and in order in both directions at once, whatever the chunking of
  writes (``send`` or ``send_vectored``) and reads;
* every write takes between 1 and all of the bytes offered (or raises BlockingIOError);
* a half close is reported: after ``shutdown_write`` the peer reads everything, then ``0`` (end of
  stream, and again on every later read), while the closing side can still read;
* nothing is invented: no byte past the end, no end of stream before all bytes.

It is driver-agnostic: the contract suite calls it for every driver with plans drawn by
hypothesis, and users can call it for their own stream implementations. Every loop is bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from horizon_core.contract import Pollable, TcpStream
from horizon_core.events import Interest

__all__ = ["TransferPlan", "Waiter", "check_two_way_stream"]


class Waiter(Protocol):
    """What the kit needs to wait: ``wait(source, interest, timeout) -> bool`` (bounded)."""

    def wait(self, source: Pollable, interest: Interest, timeout: float = ...) -> bool: ...


@dataclass(frozen=True)
class TransferPlan:
    """What to send each way and how to cut it.

    ``write_sizes``/``read_sizes`` are cycled; ``vectored`` sends each write as up to three
    ``send_vectored`` pieces; ``first_to_close`` (``"a"`` or ``"b"``) shuts its write side down as
    soon as its bytes are out, while the other side keeps sending and reading.
    """

    a_to_b: bytes
    b_to_a: bytes
    write_sizes: tuple[int, ...] = (65536,)
    read_sizes: tuple[int, ...] = (65536,)
    vectored: bool = False
    first_to_close: str = "a"


@dataclass
class _Direction:
    name: str
    sender: TcpStream
    receiver: TcpStream
    data: bytes
    sent: int = 0
    writes: int = 0
    shut: bool = False
    received: bytearray = field(default_factory=bytearray)
    reads: int = 0
    eof: bool = False
    blocked_on: Interest | None = None


def _write(direction: _Direction, plan: TransferPlan) -> bool:
    size = plan.write_sizes[direction.writes % len(plan.write_sizes)]
    chunk = memoryview(direction.data)[direction.sent : direction.sent + max(1, size)]
    try:
        if plan.vectored and len(chunk) > 2:
            third = len(chunk) // 3
            pieces = [chunk[:third], chunk[third : 2 * third], chunk[2 * third :]]
            n = direction.sender.send_vectored(pieces)
        else:
            n = direction.sender.send(chunk)
    except BlockingIOError:
        direction.blocked_on = Interest.WRITABLE
        return False
    assert 1 <= n <= len(chunk), f"{direction.name}: a write of {len(chunk)} bytes took {n}"
    direction.sent += n
    direction.writes += 1
    return True


def _read(direction: _Direction, plan: TransferPlan, buffer: bytearray) -> bool:
    size = max(1, plan.read_sizes[direction.reads % len(plan.read_sizes)])
    view = memoryview(buffer)[:size]
    try:
        n = direction.receiver.recv_into(view)
    except BlockingIOError:
        direction.blocked_on = Interest.READABLE
        return False
    direction.reads += 1
    assert 0 <= n <= size, f"{direction.name}: a read into {size} bytes returned {n}"
    if n == 0:
        assert direction.shut, f"{direction.name}: end of stream before the sender shut down"
        assert bytes(direction.received) == direction.data, (
            f"{direction.name}: end of stream after {len(direction.received)} of "
            f"{len(direction.data)} bytes"
        )
        direction.eof = True
    else:
        direction.received += view[:n]
        got = len(direction.received)
        assert got <= len(direction.data), f"{direction.name}: {got - len(direction.data)} extra bytes"
        assert direction.received[got - n :] == direction.data[got - n : got], (
            f"{direction.name}: bytes {got - n}..{got} differ from what was sent"
        )
    return True


def check_two_way_stream(
    waiter: Waiter,
    a: TcpStream,
    b: TcpStream,
    plan: TransferPlan,
    *,
    timeout: float = 10.0,
    max_rounds: int = 200_000,
) -> None:
    """Transfer ``plan`` over the connected pair ``a``/``b`` and check the stream contract."""
    directions = [
        _Direction("a->b", a, b, plan.a_to_b),
        _Direction("b->a", b, a, plan.b_to_a),
    ]
    if plan.first_to_close == "b":
        directions.reverse()
    buffer = bytearray(max(max(plan.read_sizes), 1))
    deadline = time.monotonic() + timeout
    for _ in range(max_rounds):
        if all(d.eof for d in directions):
            break
        progress = False
        for d in directions:
            d.blocked_on = None
            if d.sent < len(d.data):
                progress |= _write(d, plan)
            elif not d.shut:
                # The half close: this end stops writing but keeps reading the other direction.
                d.sender.shutdown_write()
                d.shut = True
                progress = True
            if not d.eof:
                progress |= _read(d, plan, buffer)
        if not progress:
            assert time.monotonic() < deadline, _stuck(directions, timeout)
            d = next(d for d in directions if d.blocked_on is not None)
            source = d.sender if d.blocked_on is Interest.WRITABLE else d.receiver
            waiter.wait(source, d.blocked_on or Interest.READABLE, 0.05)
    else:
        raise AssertionError(_stuck(directions, timeout))
    assert all(d.eof for d in directions), _stuck(directions, timeout)
    for d in directions:
        # End of stream is sticky: every later read says 0 again.
        assert d.receiver.recv_into(bytearray(16)) == 0, f"{d.name}: data after end of stream"


def _stuck(directions: list[_Direction], timeout: float) -> str:
    state = "; ".join(
        f"{d.name}: sent {d.sent}/{len(d.data)}, received {len(d.received)}, "
        f"shut={d.shut}, eof={d.eof}"
        for d in directions
    )
    return f"stream transfer made no progress within {timeout} s ({state})"
