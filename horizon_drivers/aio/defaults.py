"""anyio's defaults, and how an explicit NetConfig combines with them.

Rules this module obeys:

* The factories of :mod:`horizon_drivers.aio` take anyio's arguments with anyio's defaults;
  swapping ``anyio.create_udp_socket`` for ``horizon_drivers.aio.create_udp_socket`` changes no
  behaviour a program relies on. So without a ``config`` the driver opens sockets with
  ``NetConfig()`` *minus* what anyio would not do: ``reuse_port`` is off.
* An explicit ``config`` is the caller asking: its fields apply as written. ``reuse_port`` is on
  when the call's ``reuse_port=True`` or the config's ``reuse_port`` asks for it (either one).
* A listener's ``backlog``: the call's value when it differs from anyio's default (65536) or no
  config was given; otherwise ``config.tcp_backlog``.

Example:
    >>> anyio_config(None, False).reuse_port
    False
    >>> anyio_config(NetConfig(reuse_port=False), True).reuse_port
    True
    >>> listen_backlog(None, 65536), listen_backlog(NetConfig(tcp_backlog=128), 65536)
    (65535, 128)
"""

from __future__ import annotations

from typing import Final

import attrs

from horizon_core.config import NetConfig

__all__ = ["ANYIO_BACKLOG", "anyio_config", "listen_backlog"]

#: anyio's default (and largest) listen backlog.
ANYIO_BACKLOG: Final = 65536
# NetConfig.tcp_backlog tops out at 65535; listen() clamps both to net.core.somaxconn anyway.
_MAX_BACKLOG: Final = 65535
_ANYIO_BASE: Final = attrs.evolve(NetConfig(), reuse_port=False)


def anyio_config(config: NetConfig | None, reuse_port: bool) -> NetConfig:
    """The config a factory opens with: anyio's defaults unless ``config`` asks otherwise.

    Example:
        >>> anyio_config(NetConfig(), False).reuse_port   # NetConfig() asks for SO_REUSEPORT
        True
    """
    if config is None:
        return attrs.evolve(_ANYIO_BASE, reuse_port=True) if reuse_port else _ANYIO_BASE
    if not isinstance(config, NetConfig):
        raise TypeError(f"config must be a NetConfig or None, got {type(config).__name__}")
    if reuse_port and not config.reuse_port:
        return attrs.evolve(config, reuse_port=True)
    return config


def listen_backlog(config: NetConfig | None, backlog: int) -> int:
    """The backlog a listener gets from the call's ``backlog`` and ``config`` (see above).

    Example:
        >>> listen_backlog(NetConfig(tcp_backlog=128), 16)
        16
    """
    if config is not None and backlog == ANYIO_BACKLOG:
        return config.tcp_backlog
    # As anyio: at most 2**16; negative values mean "none queued" to listen() (CPython clamps).
    return min(max(backlog, 0), _MAX_BACKLOG)
