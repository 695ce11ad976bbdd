"""Stub for the compiled module horizon_drivers/native/linux/descriptor.pyx.

Its helpers are C-level (cimported through ``native/linux/descriptor.pxd``); Python sees the base class
of the Linux socket classes.
"""

from types import TracebackType
from typing import Self

from typing_extensions import disjoint_base

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.options import OptionReport

__all__: list[str]

# A cdef class: its C layout cannot be combined with another in a subclass (PEP 800).
@disjoint_base
class OwnedDescriptor:
    @property
    def config(self) -> NetConfig: ...
    @property
    def closed(self) -> bool: ...
    @property
    def options(self) -> OptionReport: ...
    @property
    def local_address(self) -> SocketAddress: ...
    @property
    def zerocopy_in_flight(self) -> int: ...
    def reap_zerocopy(self) -> int: ...
    def _reap_on_error(self) -> bool: ...
    def _inject_zerocopy_enobufs(self, count: int = 1) -> None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
