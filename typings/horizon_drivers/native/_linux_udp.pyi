"""Stub for the compiled module horizon_drivers/native/_linux_udp.pyx."""

import socket
from typing import Final, Self

from horizon_drivers.native._linux_descriptor import OwnedDescriptor
from typing_extensions import disjoint_base

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import Batch
from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike, BytesLike, Datagrams, WritableBuffer
from horizon_core.options import OptionReport
from horizon_core.stats import StatsSnapshot

__all__ = ["MAX_BATCH", "UdpSocket"]

MAX_BATCH: Final[int]

# A cdef class: its C layout cannot be combined with another in a subclass (PEP 800).
@disjoint_base
class UdpSocket(OwnedDescriptor):
    def __init__(
        self, sock: socket.socket, options: OptionReport, config: NetConfig | None = None
    ) -> None: ...
    @classmethod
    def bind(cls, address: AddressLike, config: NetConfig | None = None) -> Self: ...
    @classmethod
    def bind_dual_stack(cls, port: int, config: NetConfig | None = None) -> Self: ...
    @property
    def family(self) -> socket.AddressFamily: ...
    @property
    def stats(self) -> StatsSnapshot: ...
    def recv_batch(self, batch: Batch) -> int: ...
    def send_batch(self, datagrams: Datagrams, start: int = 0) -> int: ...
    def send_to(self, data: BytesLike, address: AddressLike) -> int: ...
    def recv_from(self, buffer: WritableBuffer) -> tuple[int, SocketAddress]: ...
    def connect(self, address: AddressLike) -> None: ...
    def send(self, data: BytesLike) -> int: ...
    def recv_into(self, buffer: WritableBuffer) -> int: ...
