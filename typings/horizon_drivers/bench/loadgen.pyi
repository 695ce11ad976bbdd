"""Stub for the compiled module horizon_drivers/bench/loadgen.pyx."""

from collections.abc import Iterable
from typing import Any, Final

from horizon_core.contract import AddressLike

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_TCP_SIZE",
    "MAX_WINDOW",
    "run_tcp_rtt",
    "run_tcp_throughput",
    "run_udp_load",
]

MAX_WINDOW: Final[int]
MAX_CONNECTIONS: Final[int]
MAX_TCP_SIZE: Final[int]

def run_udp_load(
    target: AddressLike,
    *,
    duration: float = 2.0,
    window: int = 256,
    payload_size: int = 64,
    warmup: float = 0.5,
    sample_rtt: bool = False,
    busy_wait: bool = False,
    loss_timeout: float = 0.05,
    max_samples: int = 2000000,
    socket_buffer: int = 4194304,
    quantiles: Iterable[float] | None = None,
    gso: bool = True,
) -> dict[str, Any]: ...
def run_tcp_throughput(
    target: AddressLike,
    *,
    duration: float = 2.0,
    connections: int = 1,
    size: int = 65536,
    warmup: float = 0.5,
    timeout: float = 5.0,
) -> dict[str, Any]: ...
def run_tcp_rtt(
    target: AddressLike,
    *,
    duration: float = 2.0,
    size: int = 64,
    warmup: float = 0.5,
    busy_wait: bool = False,
    timeout: float = 5.0,
    max_samples: int = 2000000,
    quantiles: Iterable[float] | None = None,
) -> dict[str, Any]: ...
