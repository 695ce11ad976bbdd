"""Helpers for the io_uring driver's tests: loopback only, every wait bounded in count and time.

Importing this module skips the importing test module where the driver cannot run (off Linux,
extension not built, io_uring refused), with the registry's reason. Test modules import it
before ``horizon_drivers.uring``.
"""

from __future__ import annotations

import gc
import time

import pytest

from horizon_core.buffers import BufferPool
from horizon_drivers import registry

_STATUS = registry.driver_status("uring")
if not _STATUS.available:
    pytest.skip(f"uring: {_STATUS.reason}", allow_module_level=True)

from horizon_drivers import uring  # noqa: E402

#: Upper bound on any wait for the kernel in these tests; loopback answers in microseconds.
WAIT = 5.0
#: Upper bound on the rounds of any receive loop.
MAX_ROUNDS = 10_000


def receive_all(
    sock: uring.UdpSocket, rt: uring.Runtime, expected: int, *, capacity: int = 64
) -> list[bytes]:
    """Receive until ``expected`` datagrams arrived or nothing more comes within WAIT seconds."""
    batch = BufferPool(capacity, 2048).batch(capacity)
    got: list[bytes] = []
    deadline = time.monotonic() + WAIT
    for _ in range(MAX_ROUNDS):
        if len(got) >= expected or time.monotonic() > deadline:
            break
        try:
            sock.recv_batch(batch)
        except BlockingIOError:
            rt.poll_once(0.05)
            continue
        got.extend(bytes(d.payload) for d in batch)
        batch.release()
    return got


def in_flight() -> int:
    """Requests the process's ring holds an owner for (after dispatching what completed)."""
    gc.collect()  # a socket dropped earlier cancels its receive when collected
    with uring.runtime() as rt:
        rt.poll_once(0)
    return int(uring.ring_stats()["requests_in_flight"])
