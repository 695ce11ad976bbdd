"""Typed extra attributes the anyio driver adds to anyio's own :class:`~anyio.abc.SocketAttribute`.

Every socket, stream and listener of :mod:`horizon_drivers.aio` answers both sets through anyio's
``extra()``, so code that only knows anyio keeps working and code that knows Horizon can ask what
the kernel did with the config.

Example::

    import anyio
    from anyio.abc import SocketAttribute
    from horizon_core.config import NetConfig
    from horizon_drivers.aio import HorizonAttribute, create_udp_socket

    async def main() -> None:
        async with await create_udp_socket(local_host="127.0.0.1", config=NetConfig()) as udp:
            print(udp.extra(SocketAttribute.local_port))
            print(udp.extra(HorizonAttribute.options)["SO_RCVBUF"].status)

    anyio.run(main)
"""

from __future__ import annotations

from anyio import TypedAttributeSet, typed_attribute

from horizon_core.config import NetConfig
from horizon_core.options import OptionReport
from horizon_core.stats import StatsSnapshot

__all__ = ["HorizonAttribute"]


class HorizonAttribute(TypedAttributeSet):
    """Horizon's typed attributes, read with ``extra()`` like anyio's.

    * ``options`` — the :class:`~horizon_core.options.OptionReport`: every option the config
      asked for, what the kernel made of it and why (all objects).
    * ``config`` — the :class:`~horizon_core.config.NetConfig` the object was opened with.
    * ``stats`` — a :class:`~horizon_core.stats.StatsSnapshot` of the counters (UDP sockets).
    * ``batch_engine`` — ``"recvmmsg"`` when receive_batch/send_batch run through the native
      Linux driver, ``"portable"`` when they use the stdlib loop (UDP sockets).

    Example:
        >>> HorizonAttribute.options is not HorizonAttribute.config
        True
    """

    options: OptionReport = typed_attribute()
    config: NetConfig = typed_attribute()
    stats: StatsSnapshot = typed_attribute()
    batch_engine: str = typed_attribute()
