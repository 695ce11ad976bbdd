"""Portable TCP: a listener that accepts configured, nonblocking streams, and the streams.

Rules this module obeys:

* Accepted streams are made nonblocking explicitly (Python's ``accept()`` returns a blocking socket
  whatever the listener is) and get the listener's config through ``opening.configure_accepted``:
  the reference library returned blocking, unconfigured streams.
* ``finish_connect`` reads SO_ERROR, then ``getpeername``: an error is raised and remembered (every
  later call raises it again), ENOTCONN means still connecting.
* Sends pass MSG_NOSIGNAL where it exists, so a reset peer is an error (BrokenPipeError or
  ConnectionResetError), never SIGPIPE. ``send_vectored`` is one ``sendmsg`` of at most IOV_MAX
  buffers; where ``sendmsg`` does not exist (Windows) it sends buffer by buffer and stops at the first
  short write.
* TCP_QUICKACK is not sticky on Linux (tcp(7)): a stream whose report shows it applied re-arms it
  after every read that returned data, as the native driver does.
* Would-block is ``BlockingIOError``; any operation on a closed object raises
  :class:`~horizon_core.errors.SocketClosedError`.

Example:
    >>> from horizon_drivers import portable
    >>> with portable.bind_tcp("127.0.0.1:0") as listener:
    ...     with portable.connect_tcp(listener.local_address) as client:
    ...         listener.local_address.port > 0
    True
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from typing import Final

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.contract import BytesLike, WritableBuffer
from horizon_core.options import Level, OptionReport, OptionStatus
from horizon_drivers.opening import configure_accepted
from horizon_drivers.portable.owned_socket import OwnedSocket
from horizon_drivers.sockopts import option_number

__all__ = ["TcpListener", "TcpStream"]

_MSG_NOSIGNAL: Final = getattr(socket, "MSG_NOSIGNAL", 0)
_QUICKACK: Final = option_number(Level.TCP, "TCP_QUICKACK")
_HAS_SENDMSG: Final = hasattr(socket.socket, "sendmsg")


def _iov_max() -> int:
    # POSIX guarantees at least 16; Linux and the BSDs say 1024. No sysconf (Windows): no sendmsg.
    try:
        return max(16, os.sysconf("SC_IOV_MAX"))
    except (AttributeError, OSError, ValueError):
        return 1024


_IOV_MAX: Final = _iov_max()
# getpeername on a socket whose connect is still in flight: ENOTCONN (WSAENOTCONN on Windows).
_NOT_CONNECTED: Final = frozenset({errno.ENOTCONN, getattr(errno, "WSAENOTCONN", errno.ENOTCONN)})


class TcpStream(OwnedSocket):
    """A nonblocking TCP connection.

    Build one with :func:`horizon_drivers.portable.connect_tcp` or accept it from a
    :class:`TcpListener`.

    Example:
        >>> from horizon_drivers import portable
        >>> with portable.bind_tcp("127.0.0.1:0") as listener:
        ...     with portable.connect_tcp(listener.local_address) as client:
        ...         client.peer_address == listener.local_address
        True
    """

    _what = "TCP stream"

    def __init__(
        self,
        sock: socket.socket,
        options: OptionReport,
        *,
        peer: SocketAddress,
        connecting: bool = False,
    ) -> None:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"expected a SOCK_STREAM socket, got {sock!r}")
        sock.setblocking(False)
        super().__init__(sock, options)
        self._peer = peer
        self._connecting = connecting
        self._connect_error: OSError | None = None
        self._quickack = (
            _QUICKACK is not None
            and "TCP_QUICKACK" in options
            and options["TCP_QUICKACK"].status is OptionStatus.APPLIED
            and options["TCP_QUICKACK"].requested == 1
        )

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else f"to {self._peer}"
        return f"<portable.TcpStream {state}>"

    @property
    def local_address(self) -> SocketAddress:
        """This end's address."""
        return SocketAddress.from_sockaddr(self._live("read the address of").getsockname())

    @property
    def peer_address(self) -> SocketAddress:
        """The other end's address (the one connected to, while the connect is in flight)."""
        self._live("read the peer of")
        return self._peer

    def finish_connect(self) -> bool:
        """True once connected, False while the connect is in progress; raises its error.

        A failed connect raises the same error on every later call.
        """
        sock = self._live("finish connecting")
        if self._connect_error is not None:
            raise self._connect_error
        if not self._connecting:
            return True
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            # OSError(errno, ...) builds the matching subclass (ConnectionRefusedError, ...).
            self._connect_error = OSError(err, f"connect to {self._peer} failed: {os.strerror(err)}")
            raise self._connect_error
        try:
            sock.getpeername()
        except OSError as exc:
            if exc.errno in _NOT_CONNECTED:
                return False
            raise
        self._connecting = False
        return True

    def recv_into(self, buffer: WritableBuffer) -> int:
        """Read into ``buffer``; 0 means the peer closed its write side.

        BlockingIOError when nothing is waiting; ConnectionResetError on a reset.
        """
        sock = self._live("recv_into")
        n = sock.recv_into(buffer)
        if n and self._quickack and _QUICKACK is not None:
            sock.setsockopt(*_QUICKACK, 1)
        return n

    def send(self, data: BytesLike) -> int:
        """Write what the kernel takes now; return how many bytes (may be fewer than given)."""
        return self._live("send").send(data, _MSG_NOSIGNAL)

    def send_vectored(self, buffers: Sequence[BytesLike]) -> int:
        """Write several buffers in one call (sendmsg); return the bytes taken."""
        sock = self._live("send_vectored")
        if not buffers:
            return 0
        if _HAS_SENDMSG:
            # More than IOV_MAX buffers is EMSGSIZE: send the first IOV_MAX, a short write.
            chunk = buffers if len(buffers) <= _IOV_MAX else buffers[:_IOV_MAX]
            return sock.sendmsg(chunk, (), _MSG_NOSIGNAL)
        total = 0
        for buffer in buffers:
            try:
                n = sock.send(buffer)
            except BlockingIOError:
                if total:
                    return total
                raise
            total += n
            if n < memoryview(buffer).nbytes:
                break
        return total

    def shutdown_write(self) -> None:
        """Half close: the peer reads end-of-stream, this end can still read."""
        self._live("shutdown_write").shutdown(socket.SHUT_WR)


class TcpListener(OwnedSocket):
    """A nonblocking listening TCP socket whose accepted streams get its config.

    Build one with :func:`horizon_drivers.portable.bind_tcp`.

    Example:
        >>> from horizon_drivers import portable
        >>> with portable.bind_tcp("127.0.0.1:0") as listener:
        ...     try:
        ...         listener.accept_nonblocking()
        ...     except BlockingIOError:
        ...         print("nothing to accept")
        nothing to accept
    """

    _what = "TCP listener"

    def __init__(self, sock: socket.socket, options: OptionReport, config: NetConfig) -> None:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"expected a SOCK_STREAM socket, got {sock!r}")
        sock.setblocking(False)
        super().__init__(sock, options)
        self._config = config
        self._local = SocketAddress.from_sockaddr(sock.getsockname())

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else f"on {self._local}"
        return f"<portable.TcpListener {state}>"

    @property
    def local_address(self) -> SocketAddress:
        """The bound address (with the port the kernel chose for port 0)."""
        return self._local

    def accept_nonblocking(self) -> tuple[TcpStream, SocketAddress]:
        """Accept one connection as a nonblocking, configured stream; BlockingIOError if none."""
        conn, raw = self._live("accept").accept()
        try:
            peer = SocketAddress.from_sockaddr(raw)
        except BaseException:
            conn.close()
            raise
        # configure_accepted makes it nonblocking (Python's accept() returns a blocking socket
        # whatever the listener is) and closes it if it raises.
        report = configure_accepted(conn, self._config)
        return TcpStream(conn, report, peer=peer), peer
