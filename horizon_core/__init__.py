"""Horizon Sockets' pure state layer: configuration, option planning, buffers, tokens, contract.

Nothing here performs I/O: no sockets, syscalls, clocks, threads or event loops. Kernel answers and
time are passed in, so every behaviour is deterministic and property-tested. The drivers in
``horizon_drivers`` apply these decisions to the operating system. Hypothesis strategies live in
``horizon_core.strategies`` (imported on demand: hypothesis is a test dependency).

Example:
    >>> from horizon_core import BufferPool, NetConfig
    >>> NetConfig().recv_buf
    1048576
    >>> batch = BufferPool(slot_count=8, slot_size=2048).batch(8)
    >>> batch.append(b"ping"); bytes(batch.payload(0))
    0
    b'ping'
"""

from __future__ import annotations

from horizon_core._version import __version__ as __version__
from horizon_core.addresses import (
    FAMILY_TAG_NONE,
    FAMILY_TAG_V4,
    FAMILY_TAG_V6,
    PACKED_ADDRESS_SIZE,
    IPAddress,
    SocketAddress,
    SocketAddressLike,
    as_socket_address,
)
from horizon_core.buffers import (
    MAX_POOL_BYTES,
    MAX_SLOT_COUNT,
    MAX_SLOT_SIZE,
    TRANSITIONS,
    Batch,
    BufferPool,
    Datagram,
    SlotOp,
    SlotState,
    check_batch,
    check_start,
)
from horizon_core.config import (
    GiB,
    KiB,
    MiB,
    NetConfig,
    resolve_config,
)
from horizon_core.contract import (
    AddressLike,
    AsyncTcpListener,
    AsyncTcpStream,
    AsyncUdpSocket,
    BytesLike,
    Datagrams,
    Driver,
    Pollable,
    Runtime,
    TcpListener,
    TcpStream,
    UdpSocket,
    WritableBuffer,
)
from horizon_core.errors import (
    ConfigError,
    FieldProblem,
    HorizonError,
    OptionError,
    PoolExhaustedError,
    SlotStateError,
    SocketClosedError,
    StaleTokenError,
)
from horizon_core.events import (
    MAX_POLL_TIMEOUT,
    Event,
    Interest,
    Readiness,
    check_interest,
    check_timeout,
)
from horizon_core.faults import (
    DatagramFate,
    FaultPlan,
    RandomSource,
)
from horizon_core.options import (
    OPTION_FIELDS,
    OPTION_NAMES,
    Family,
    Feature,
    KernelLimits,
    Level,
    Necessity,
    Observation,
    OptionOutcome,
    OptionPlan,
    OptionReport,
    OptionSetting,
    OptionStatus,
    Phase,
    Platform,
    SkippedOption,
    SocketKind,
    build_report,
    plan_options,
)
from horizon_core.slab import (
    MAX_GENERATION,
    MAX_INDEX,
    Slab,
    Token,
    token_generation,
    token_index,
)
from horizon_core.stats import (
    HISTOGRAM_BUCKETS,
    Stats,
    StatsSnapshot,
    histogram_bucket,
)

__all__ = [
    "AddressLike",
    "AsyncTcpListener",
    "AsyncTcpStream",
    "AsyncUdpSocket",
    "Batch",
    "BufferPool",
    "BytesLike",
    "ConfigError",
    "Datagram",
    "DatagramFate",
    "Datagrams",
    "Driver",
    "Event",
    "FAMILY_TAG_NONE",
    "FAMILY_TAG_V4",
    "FAMILY_TAG_V6",
    "Family",
    "Feature",
    "FaultPlan",
    "FieldProblem",
    "GiB",
    "HISTOGRAM_BUCKETS",
    "HorizonError",
    "IPAddress",
    "Interest",
    "KernelLimits",
    "KiB",
    "Level",
    "MAX_GENERATION",
    "MAX_INDEX",
    "MAX_POOL_BYTES",
    "MAX_SLOT_COUNT",
    "MAX_SLOT_SIZE",
    "MiB",
    "Necessity",
    "NetConfig",
    "OPTION_FIELDS",
    "OPTION_NAMES",
    "Observation",
    "OptionError",
    "OptionOutcome",
    "OptionPlan",
    "OptionReport",
    "OptionSetting",
    "OptionStatus",
    "PACKED_ADDRESS_SIZE",
    "Phase",
    "Platform",
    "Pollable",
    "PoolExhaustedError",
    "RandomSource",
    "Readiness",
    "Runtime",
    "SkippedOption",
    "Slab",
    "SlotOp",
    "SlotState",
    "SlotStateError",
    "SocketAddress",
    "SocketAddressLike",
    "SocketClosedError",
    "SocketKind",
    "StaleTokenError",
    "Stats",
    "StatsSnapshot",
    "TRANSITIONS",
    "TcpListener",
    "TcpStream",
    "Token",
    "UdpSocket",
    "WritableBuffer",
    "as_socket_address",
    "build_report",
    "histogram_bucket",
    "plan_options",
    "token_generation",
    "token_index",
    "resolve_config",
    "MAX_POLL_TIMEOUT",
    "check_batch",
    "check_interest",
    "check_start",
    "check_timeout",
]
