"""Stub for the compiled module horizon_drivers/bench/_loadgen.pyx (with its .pxi includes)."""

from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_PIPELINE",
    "MAX_TCP_SIZE",
    "MAX_WINDOW",
    "tcp_pipelined",
    "tcp_rtt",
    "tcp_throughput",
    "udp_load",
]

MAX_WINDOW: Final[int]
MAX_CONNECTIONS: Final[int]
MAX_TCP_SIZE: Final[int]
MAX_PIPELINE: Final[int]

def udp_load(
    fd: int,
    *,
    duration: float = 2.0,
    window: int = 256,
    payload_size: int = 64,
    warmup: float = 0.5,
    sample_rtt: bool = False,
    busy_wait: bool = False,
    loss_timeout: float = 0.05,
    max_samples: int = 2000000,
    gso: bool = True,
) -> dict[str, Any]: ...
def tcp_throughput(
    fds: Iterable[int],
    *,
    peer: str = "the server",
    duration: float = 2.0,
    size: int = 65536,
    warmup: float = 0.5,
    timeout: float = 5.0,
) -> dict[str, Any]: ...
def tcp_rtt(
    fd: int,
    *,
    peer: str = "the server",
    duration: float = 2.0,
    size: int = 64,
    warmup: float = 0.5,
    busy_wait: bool = False,
    timeout: float = 5.0,
    max_samples: int = 2000000,
) -> dict[str, Any]: ...
def tcp_pipelined(
    fd: int,
    *,
    peer: str = "the server",
    duration: float = 2.0,
    size: int = 64,
    pipeline: int = 256,
    warmup: float = 0.5,
    busy_wait: bool = False,
    timeout: float = 5.0,
    max_samples: int = 2000000,
) -> dict[str, Any]: ...
