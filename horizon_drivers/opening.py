"""Opening sockets from the core's option plan: the one place every driver gets its sockets.

Rules this module obeys:

* Order is fixed: plan (``horizon_core.options.plan_options``), apply the BEFORE_BIND settings,
  refuse early if a required one was refused, bind (and listen, backlog ``config.tcp_backlog``)
  or start the connect, apply the AFTER_BIND settings, build the report, and raise
  :class:`~horizon_core.errors.OptionError` for a refused required option. A socket that fails
  any step is closed before the error propagates: nothing leaks.
* Every socket is nonblocking and close-on-exec (CPython creates sockets non-inheritable).
* One deliberate exception to the plan's phases: a UDP socket bound to port 0 gets SO_REUSEADDR
  and SO_REUSEPORT right *after* bind. Set before, they let the kernel pick an ephemeral port that
  another socket of this user already holds with the same flags (``udp_lib_lport_inuse`` treats
  it as shareable), and the two sockets would silently split each other's datagrams. The flags
  are read when a *later* socket binds, so sockets can still join this one's port afterwards.
* Addresses are IP literals, bound as the stdlib spells them (``(host, port)``), so any IPv4
  address works, not only 0.0.0.0 (the reference swapped byte orders and failed on 127.0.0.2).
* Accepted TCP streams get the TCP_STREAM plan too (:func:`configure_accepted`): nodelay,
  quickack, buffers, tos. The reference returned them blocking and unconfigured. An option an
  accepted stream cannot change any more (IPV6_V6ONLY: EINVAL once bound) but already inherited
  from its listener with the requested value is observed as in effect, not as unsupported.
* The plan names the features of the driver that will own the socket (``features``: what it
  implements, such as zero-copy sends); options that need a feature the driver lacks are
  reported skipped. Only the native Linux driver passes :data:`NATIVE_FEATURES`.
* Values are read back once the socket is bound or connected: binding changes some (Linux sets
  IPV6_V6ONLY on a socket bound to a specific IPv6 address), and the report says what the socket
  has, not what it had before bind.

Example:
    >>> from horizon_core.config import NetConfig
    >>> sock, report = open_udp("127.0.0.2:0", NetConfig())
    >>> sock.getsockname()[0], sock.getblocking(), report["reuse_port"].status.value
    ('127.0.0.2', False, 'applied')
    >>> sock.close()
"""

from __future__ import annotations

import errno
import socket

import attrs

from horizon_core.addresses import SocketAddress, SocketAddressLike, as_socket_address
from horizon_core.config import NetConfig, dual_stack_config
from horizon_core.options import (
    Family,
    Feature,
    Observation,
    OptionPlan,
    OptionReport,
    OptionSetting,
    SocketKind,
    build_report,
    plan_options,
)
from horizon_drivers.sockopts import (
    apply_settings,
    current_platform,
    read_back,
    read_kernel_limits,
)

__all__ = [
    "NATIVE_FEATURES",
    "configure_accepted",
    "dual_stack_config",
    "open_tcp_listener",
    "open_tcp_stream",
    "open_udp",
    "open_udp_dual_stack",
    "plan_for",
]

# A nonblocking connect that is under way: Linux/BSD say EINPROGRESS, Windows WSAEWOULDBLOCK.
_CONNECT_IN_PROGRESS = frozenset(
    code
    for code in (
        errno.EINPROGRESS,
        errno.EWOULDBLOCK,
        errno.EAGAIN,
        getattr(errno, "WSAEWOULDBLOCK", None),
    )
    if code is not None
)


#: What the native Linux driver implements beyond applying options: MSG_ZEROCOPY sends and their
#: completions.
NATIVE_FEATURES: frozenset[Feature] = frozenset({Feature.ZEROCOPY})

_NO_FEATURES: frozenset[Feature] = frozenset()

# Options that make a port shareable; see the module docstring for why port-0 UDP defers them.
_SHARING_OPTIONS = frozenset({"SO_REUSEADDR", "SO_REUSEPORT"})


def _family_of(address: SocketAddress) -> Family:
    return Family.IPV4 if address.family == 4 else Family.IPV6


def _af(family: Family) -> socket.AddressFamily:
    return socket.AF_INET if family is Family.IPV4 else socket.AF_INET6


def plan_for(
    config: NetConfig,
    family: Family,
    kind: SocketKind,
    features: frozenset[Feature] = _NO_FEATURES,
) -> OptionPlan:
    """The core's plan for a socket of ``family`` and ``kind`` on this platform, for a driver
    implementing ``features``.

    Example:
        >>> plan = plan_for(NetConfig(), Family.IPV4, SocketKind.TCP_STREAM)
        >>> "TCP_NODELAY" in [s.name for s in plan.settings]
        True
    """
    return plan_options(config, family, kind, current_platform(), features=features)


def _refresh(
    sock: socket.socket, settings: tuple[OptionSetting, ...], observed: dict[str, Observation]
) -> None:
    """Re-read what bind/connect may have changed; the report then says what the socket has."""
    for setting in settings:
        seen = observed[setting.name]
        if seen.error is not None or seen.effective is None:
            continue
        target = setting.fallback if seen.used_fallback and setting.fallback else setting
        value = read_back(sock, target)
        if value is not None and value != seen.effective:
            observed[setting.name] = attrs.evolve(seen, effective=value)


def _accept_inherited(
    sock: socket.socket, settings: tuple[OptionSetting, ...], observed: dict[str, Observation]
) -> None:
    """An option refused with EINVAL on an accepted stream, but already as requested, is in effect."""
    for setting in settings:
        seen = observed[setting.name]
        if seen.error != errno.EINVAL or seen.used_fallback or not setting.readback:
            continue
        value = read_back(sock, setting)
        if value is not None and bool(value) == bool(setting.value) and setting.value in (0, 1):
            observed[setting.name] = Observation(setting.name, effective=value)


def _report(plan: OptionPlan, observed: dict[str, Observation]) -> OptionReport:
    return build_report(plan, observed, read_kernel_limits())


def _open(
    address: SocketAddress,
    kind: SocketKind,
    config: NetConfig,
    features: frozenset[Feature],
    local: SocketAddress | None = None,
) -> tuple[socket.socket, OptionReport]:
    family = _family_of(address)
    plan = plan_for(config, family, kind, features)
    sock_type = socket.SOCK_DGRAM if kind is SocketKind.UDP else socket.SOCK_STREAM
    sock = socket.socket(_af(family), sock_type)
    try:
        sock.setblocking(False)
        before = plan.before_bind()
        deferred: tuple[OptionSetting, ...] = ()
        if kind is SocketKind.UDP and address.port == 0:
            deferred = tuple(s for s in before if s.name in _SHARING_OPTIONS)
            before = tuple(s for s in before if s.name not in _SHARING_OPTIONS)
        observed = apply_settings(sock, before)
        # Refuse before bind: a required option the kernel said no to must not cost a port.
        early = attrs.evolve(plan, settings=before, skipped=())
        _report(early, observed).raise_for_required()
        target = address.to_sockaddr()
        if kind is SocketKind.TCP_STREAM:
            if local is not None:
                # A chosen source address/port: bound after the BEFORE_BIND options (buffers
                # must precede connect: the SYN fixes the window scale), before the SYN leaves.
                sock.bind(local.to_sockaddr())
            code = sock.connect_ex(target)
            if code != 0 and code not in _CONNECT_IN_PROGRESS:
                raise OSError(code, f"connect to {address}: {errno.errorcode.get(code, code)}")
        else:
            sock.bind(target)
            observed.update(apply_settings(sock, deferred))
            if kind is SocketKind.TCP_LISTENER:
                sock.listen(config.tcp_backlog)
        observed.update(apply_settings(sock, plan.after_bind()))
        _refresh(sock, before + deferred, observed)
        report = _report(plan, observed)
        report.raise_for_required()
    except BaseException:
        sock.close()
        raise
    return sock, report


def open_udp(
    address: SocketAddressLike,
    config: NetConfig,
    features: frozenset[Feature] = _NO_FEATURES,
) -> tuple[socket.socket, OptionReport]:
    """A nonblocking UDP socket bound to ``address`` with ``config`` applied, and its report.

    Example:
        >>> sock, report = open_udp("[::1]:0", NetConfig())
        >>> sock.family.name, report["recv_buf"].status.value in ("applied", "adjusted")
        ('AF_INET6', True)
        >>> sock.close()
    """
    return _open(as_socket_address(address), SocketKind.UDP, config, features)


def open_udp_dual_stack(
    port: int, config: NetConfig, features: frozenset[Feature] = _NO_FEATURES
) -> tuple[socket.socket, OptionReport]:
    """A UDP socket on ``[::]:port`` with IPV6_V6ONLY off (IPv4 peers as ``::ffff:a.b.c.d``).

    Example:
        >>> sock, report = open_udp_dual_stack(0, NetConfig())
        >>> report["ipv6_only"].effective
        0
        >>> sock.close()
    """
    address = SocketAddress.parse(f"[::]:{port}")
    return _open(address, SocketKind.UDP, dual_stack_config(config), features)


def open_tcp_listener(
    address: SocketAddressLike, config: NetConfig, features: frozenset[Feature] = _NO_FEATURES
) -> tuple[socket.socket, OptionReport]:
    """A nonblocking TCP socket bound to ``address`` and listening (``config.tcp_backlog``).

    Example:
        >>> sock, _ = open_tcp_listener("127.0.0.2:0", NetConfig())
        >>> sock.getsockname()[0]
        '127.0.0.2'
        >>> sock.close()
    """
    return _open(as_socket_address(address), SocketKind.TCP_LISTENER, config, features)


def open_tcp_stream(
    address: SocketAddressLike,
    config: NetConfig,
    features: frozenset[Feature] = _NO_FEATURES,
    *,
    local: SocketAddressLike | None = None,
) -> tuple[socket.socket, OptionReport]:
    """A nonblocking TCP socket whose connect to ``address`` has started (EINPROGRESS is fine).

    ``local`` (same family as ``address``) is the source address and port to bind first; None
    lets the kernel choose. Completion is seen as writability; SO_ERROR then holds the
    connect's result.

    Example:
        >>> listener, _ = open_tcp_listener("127.0.0.1:0", NetConfig())
        >>> sock, report = open_tcp_stream(listener.getsockname(), NetConfig())
        >>> report["tcp_nodelay"].effective
        1
        >>> sock.close(); listener.close()
    """
    source = None if local is None else as_socket_address(local)
    return _open(as_socket_address(address), SocketKind.TCP_STREAM, config, features, source)


def configure_accepted(
    sock: socket.socket, config: NetConfig, features: frozenset[Feature] = _NO_FEATURES
) -> OptionReport:
    """Make an accepted stream nonblocking and apply the TCP_STREAM plan; return the report.

    Every setting is applied right after accept, in plan order. The socket is closed if a
    required option is refused (OptionError) or anything else fails.

    Example:
        >>> listener, _ = open_tcp_listener("127.0.0.1:0", NetConfig())
        >>> client, _ = open_tcp_stream(listener.getsockname(), NetConfig())
        >>> import select; _ = select.select([listener], [], [], 5)
        >>> accepted, _ = listener.accept()
        >>> configure_accepted(accepted, NetConfig())["tcp_nodelay"].effective
        1
        >>> accepted.getblocking()
        False
        >>> for s in (accepted, client, listener): s.close()
    """
    try:
        sock.setblocking(False)
        family = Family.IPV4 if sock.family == socket.AF_INET else Family.IPV6
        plan = plan_for(config, family, SocketKind.TCP_STREAM, features)
        observed = apply_settings(sock, plan.settings)
        _accept_inherited(sock, plan.settings, observed)
        report = _report(plan, observed)
        report.raise_for_required()
    except BaseException:
        sock.close()
        raise
    return report
