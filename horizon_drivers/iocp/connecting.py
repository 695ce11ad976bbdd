"""Opening a TCP stream for ConnectEx: configured and bound, not yet connecting.

Rules this module obeys:

* It is :func:`horizon_drivers.opening.open_tcp_stream` minus the connect: the same plan
  (:func:`horizon_drivers.opening.plan_for`), the same appliers and report, in the same order.
  ConnectEx needs a *bound* socket and starts the connect itself, so this module binds the
  wildcard address of the target's family (port 0) where ``open_tcp_stream`` would connect.
* A required option the kernel refuses raises :class:`~horizon_core.errors.OptionError` before
  the socket is bound; a socket that fails any step is closed before the error propagates.
* Pure stdlib ``socket`` and the shared plumbing: it type-checks and runs on any platform (the
  iocp driver calls it on Windows only).

Example:
    >>> from horizon_core.config import NetConfig
    >>> from horizon_core.addresses import SocketAddress
    >>> sock, report = open_stream_for_connect(SocketAddress.parse("127.0.0.1:9"), NetConfig())
    >>> sock.getsockname()[0], report["tcp_nodelay"].effective
    ('0.0.0.0', 1)
    >>> sock.close()
"""

from __future__ import annotations

import socket

import attrs

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.options import Family, OptionReport, SocketKind, build_report
from horizon_drivers.opening import plan_for
from horizon_drivers.sockopts import apply_settings, read_back, read_kernel_limits

__all__ = ["open_stream_for_connect"]


def open_stream_for_connect(
    target: SocketAddress, config: NetConfig
) -> tuple[socket.socket, OptionReport]:
    """A nonblocking TCP socket of ``target``'s family, configured and bound to port 0.

    Every planned setting (before and after bind) is applied before the connect starts, so
    the report is complete when ``connect`` returns.
    """
    family = Family.IPV4 if target.family == 4 else Family.IPV6
    plan = plan_for(config, family, SocketKind.TCP_STREAM)
    af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    sock = socket.socket(af, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        observed = apply_settings(sock, plan.before_bind())
        limits = read_kernel_limits()
        # Refuse before bind: a required option Windows said no to must not cost a port.
        early = attrs.evolve(plan, settings=plan.before_bind(), skipped=())
        build_report(early, observed, limits).raise_for_required()
        sock.bind(("0.0.0.0", 0) if family is Family.IPV4 else ("::", 0))
        observed.update(apply_settings(sock, plan.after_bind()))
        # Binding can change what an option reads back as: report what the socket has now.
        for setting in plan.before_bind():
            seen = observed[setting.name]
            if seen.error is None and seen.effective is not None and not seen.used_fallback:
                value = read_back(sock, setting)
                if value is not None and value != seen.effective:
                    observed[setting.name] = attrs.evolve(seen, effective=value)
        report = build_report(plan, observed, limits)
        report.raise_for_required()
    except BaseException:
        sock.close()
        raise
    return sock, report
