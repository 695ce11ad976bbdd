"""Drivers that apply horizon_core's decisions to the operating system.

Each driver is a subpackage implementing the contract in :mod:`horizon_core.contract`:
``native`` (Linux epoll + recvmmsg/sendmmsg, Cython), ``portable`` (stdlib selectors),
``aio`` (anyio on asyncio and trio), ``sim`` (an in-memory network with a virtual clock) and,
on Windows, ``iocp``. Drivers are imported on demand, so this package imports on every platform.

Example:
    >>> from horizon_drivers import usable_cpu_count
    >>> usable_cpu_count() >= 1
    True
"""

from __future__ import annotations

from horizon_core._version import __version__ as __version__  # one version for both packages
from horizon_drivers import tuning
from horizon_drivers.tuning import *  # noqa: F403  (the tuning functions are this package's API)

__all__ = tuning.__all__
