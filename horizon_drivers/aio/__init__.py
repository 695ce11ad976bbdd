"""The anyio driver: tuned, batched UDP and TCP for anyio apps on asyncio, uvloop and trio.

anyio apps get NetConfig (every option applied before bind or connect, reported back), batches
and honest backpressure without changing habits: the objects returned here *are* anyio sockets
(:class:`anyio.abc.UDPSocket`, :class:`~anyio.abc.ConnectedUDPSocket`,
:class:`~anyio.abc.SocketStream`, :class:`~anyio.abc.SocketListener`), so code written for
``anyio.create_udp_socket`` and friends works unchanged. The four factories take anyio 4.x's
parameters in anyio's order with anyio's defaults (TLS, local binding, happy eyeballs and error
shapes included); Horizon's ``config`` and ``batch_engine`` are keyword-only, after them.

Beyond anyio:

* ``await udp.receive_batch(batch)`` / ``await udp.send_batch(batch_or_pairs, start)`` move many
  datagrams per await through the core's :class:`~horizon_core.buffers.BufferPool`: one
  recvmmsg/sendmmsg on Linux (the native driver's calls on this socket's descriptor), a stdlib
  loop elsewhere.
* ``udp.stats`` counts everything, including the kernel's drop counter (SO_RXQ_OVFL); there is no
  queue between the kernel and your task, so nothing is dropped where you cannot see it.
* ``extra(HorizonAttribute.options)`` is the :class:`~horizon_core.options.OptionReport`.
* ``NetConfig.spin_budget``: a receive that finds nothing retries at every event-loop pass for
  that many microseconds before it sleeps on the socket (lower latency for a busy CPU).

Example::

    import anyio
    from horizon_core import BufferPool, NetConfig
    from horizon_drivers.aio import HorizonAttribute, create_udp_socket

    async def main() -> None:
        async with await create_udp_socket(local_host="127.0.0.1", config=NetConfig()) as udp:
            print(udp.extra(HorizonAttribute.options)["recv_buf"].status)
            pool = BufferPool(256, 2048)
            batch = pool.batch(64)
            n = await udp.receive_batch(batch)   # waits for the first datagram
            ...

    anyio.run(main)
"""

from __future__ import annotations

from horizon_drivers.aio.attributes import HorizonAttribute
from horizon_drivers.aio.batch_io import native_available
from horizon_drivers.aio.tcp import (
    HorizonSocketListener,
    HorizonSocketStream,
    connect_tcp,
    create_tcp_listener,
)
from horizon_drivers.aio.udp import (
    EngineChoice,
    HorizonConnectedUDPSocket,
    HorizonUDPSocket,
    OutgoingDatagrams,
    create_connected_udp_socket,
    create_udp_socket,
)
from horizon_drivers.sockopts import read_kernel_limits

# Every socket open reports against the kernel's buffer limits (/proc/sys/net/core). They are
# cached per process; reading them here, at import, keeps that file read out of the event loop.
read_kernel_limits()

#: The name the driver registry and the command line use.
NAME = "aio"

__all__ = [
    "NAME",
    "EngineChoice",
    "HorizonAttribute",
    "HorizonConnectedUDPSocket",
    "HorizonSocketListener",
    "HorizonSocketStream",
    "HorizonUDPSocket",
    "OutgoingDatagrams",
    "connect_tcp",
    "create_connected_udp_socket",
    "create_tcp_listener",
    "create_udp_socket",
    "native_available",
]
