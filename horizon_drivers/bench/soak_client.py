"""The two sides of ``horizon soak``: the echo server in a pinned child, the client in this process.

Rules this module obeys:

* The server is ``python -m horizon_drivers.bench.child serve DRIVER udp|tcp``: the driver's own
  echo service, pinned to its CPU, reporting its totals (its socket's stats, kernel drops
  included) when SIGTERM stops it. Every wait on it is bounded; it never outlives the soak.
* The UDP client keeps ``window`` datagrams in flight on a connected socket with the client
  driver's batch calls (``send_batch`` of payload pairs, ``recv_batch``). Losses would shrink the
  window for good, so when nothing has arrived for :data:`STALL_SECONDS` the datagrams in flight
  stop counting against it (they stay in the ledger: a late echo still counts).
* Ending is ordered: stop sending, receive for the grace period (or until every datagram is
  back), read the client socket's stats, then stop the server and read its totals. Nothing is
  in flight when the counters are read, so the accounting can be exact.
* TCP streams records on ``connections`` connections, at most :data:`TCP_WINDOW` bytes in flight
  on each; at the end each half-closes and reads until the server closes (bounded).
* Progress is a callback with a :class:`Progress` at least every :data:`PROGRESS_INTERVAL`
  seconds; the caller decides how to show it.

Example:
    >>> Progress("udp", 1.0, 10, 9, 0, 9.0).line()
    'udp 1.0s: sent 10, echoed 9, drops 0, 9/s'
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any, Final

import attrs

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import BufferPool
from horizon_core.config import NetConfig
from horizon_core.contract import Driver, TcpStream
from horizon_core.events import Interest
from horizon_core.slab import Token
from horizon_drivers.bench.soak_verify import MAX_SIZE, SizePlan, TcpLedger, UdpLedger
from horizon_drivers.cli.echo_service import StopFlag

__all__ = [
    "PROGRESS_INTERVAL",
    "STALL_SECONDS",
    "TCP_WINDOW",
    "Limit",
    "Progress",
    "ServerFailed",
    "SoakServer",
    "TcpResult",
    "UdpResult",
    "client_config",
    "soak_tcp",
    "soak_udp",
]

PROGRESS_INTERVAL: Final = 1.0
#: No echo for this long: the datagrams in flight stop holding the window.
STALL_SECONDS: Final = 0.1
#: Bytes one TCP connection may have sent and not yet had echoed.
TCP_WINDOW: Final = 1 << 20
READY_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 10.0
_BATCH = 64
_SLOT = 65536  # > MAX_SIZE: a longer echo shows up truncated, never silently cut
_POLL = 0.005
_TCP_CHUNK = 32768
_CONNECT_TIMEOUT = 5.0
_CHILD = [sys.executable, "-m", "horizon_drivers.bench.child"]


def client_config() -> NetConfig:
    """The client socket's config: big buffers, the drop counter on.

    Example:
        >>> client_config().rx_drop_counter
        True
    """
    return attrs.evolve(NetConfig(), recv_buf=4 << 20, send_buf=4 << 20, rx_drop_counter=True)


@attrs.frozen
class Limit:
    """When the client stops sending: after ``seconds``, or after ``count`` datagrams/records.

    Example:
        >>> Limit(None, 5).reached(0.0, 5), Limit(2.0, None).reached(1.0, 10**9)
        (True, False)
    """

    seconds: float | None
    count: int | None

    def reached(self, elapsed: float, sent: int) -> bool:
        """Whether to stop sending now."""
        if self.count is not None and sent >= self.count:
            return True
        return self.seconds is not None and elapsed >= self.seconds


@attrs.frozen
class Progress:
    """One progress report (``unit`` " B": bytes, TCP, which has no drop counter).

    Example:
        >>> Progress("tcp", 2.0, 100, 90, None, 45.0, " B").line()
        'tcp 2.0s: sent 100 B, echoed 90 B, 45 B/s'
    """

    protocol: str
    elapsed: float
    sent: int
    echoed: int
    drops: int | None
    rate: float
    unit: str = ""

    def line(self) -> str:
        """``udp 3.0s: sent 600,000, echoed 599,936, drops 0, 200,000/s``."""
        drops = "" if self.unit else (
            ", drops n/a" if self.drops is None else f", drops {self.drops:,}"
        )
        return (f"{self.protocol} {self.elapsed:.1f}s: sent {self.sent:,}{self.unit}, "
                f"echoed {self.echoed:,}{self.unit}{drops}, {self.rate:,.0f}{self.unit}/s")


class ServerFailed(Exception):
    """The server child could not start, or died: one line saying why."""


# -- the server child ---------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class SoakServer:
    """``driver``'s echo service for ``protocol`` in a child process pinned to ``cpu``.

    Use as a context manager: on the way out the child is killed if still running.
    """

    def __init__(self, driver: str, protocol: str, *, cpu: int | None,
                 config: str | None) -> None:
        self._err: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed on exit)
        command = [*_CHILD, *([] if cpu is None else ["--cpu", str(cpu)]), "serve", driver,
                   protocol, "--address", "127.0.0.1:0"]
        if config is not None:
            command += ["--config", config]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
            text=True, env=_env(), start_new_session=True,
        )
        try:
            self.address = SocketAddress.parse(str(self._answer(READY_TIMEOUT)["ready"]))
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self) -> SoakServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=STOP_TIMEOUT)
        self._err.close()

    def _last_error_line(self) -> str:
        self._err.seek(0)
        lines = [line.strip() for line in self._err.read().splitlines() if line.strip()]
        return lines[-1] if lines else "no output"

    def _answer(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise ServerFailed(f"the server did not start within {timeout:.0f}s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(STOP_TIMEOUT)
            raise ServerFailed(f"the server exited ({self.proc.returncode}): "
                               f"{self._last_error_line()}")
        return self._message(line)

    def _message(self, line: str) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except ValueError:
            raise ServerFailed(f"the server said {line.strip()!r}") from None
        if not isinstance(message, dict):
            raise ServerFailed(f"the server said {line.strip()!r}")
        if "error" in message:
            raise ServerFailed(f"the server failed: {message['error']}")
        return message

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.proc.poll() is None

    def stop(self) -> dict[str, Any]:
        """SIGTERM, bounded wait (then SIGKILL); the totals the server reported."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=STOP_TIMEOUT)
            raise ServerFailed(f"the server did not stop within {STOP_TIMEOUT:.0f}s") from None
        for line in (out or "").splitlines():
            message = self._message(line)
            if isinstance(message.get("totals"), dict):
                totals: dict[str, Any] = message["totals"]
                return totals
        raise ServerFailed(f"the server exited ({self.proc.returncode}) without its totals: "
                           f"{self._last_error_line()}")


# -- UDP ----------------------------------------------------------------------------------------


@attrs.frozen
class UdpResult:
    """What the UDP client saw: its ledger, its socket's stats, how long it sent."""

    ledger: UdpLedger
    client_stats: dict[str, Any]
    seconds: float
    stalls: int
    error: str | None


def soak_udp(
    driver: Driver,
    target: SocketAddress,
    *,
    sizes: SizePlan,
    window: int,
    limit: Limit,
    grace: float,
    stop: StopFlag,
    progress: Callable[[Progress], None],
    ledger: UdpLedger | None = None,
) -> UdpResult:
    """Soak ``target``'s UDP echo from a socket of ``driver``; see the module rules."""
    ledger = ledger if ledger is not None else UdpLedger()
    sock = driver.bind_udp(f"{target.host}:0" if target.family == 4 else "[::1]:0",
                           client_config())
    runtime = driver.runtime(client_config())
    error: str | None = None
    stalls = 0
    try:
        sock.connect(target)
        runtime.register(sock, Interest.READABLE)
        batch = BufferPool(_BATCH, _SLOT).batch(_BATCH)
        started = last_echo = last_report = time.monotonic()
        reported = 0
        sending = True
        drain_until = 0.0
        outstanding = 0
        seconds = 0.0
        while True:
            now = time.monotonic()
            if sending and (stop.is_set() or limit.reached(now - started, ledger.sent)):
                sending = False
                seconds = now - started
                drain_until = now + grace
            if not sending and (ledger.echoed >= ledger.sent or now >= drain_until):
                break
            if now - last_report >= PROGRESS_INTERVAL:
                progress(Progress("udp", now - started, ledger.sent, ledger.echoed,
                                  sock.stats.kernel_drops,
                                  (ledger.echoed - reported) / (now - last_report)))
                last_report, reported = now, ledger.echoed
            credit = window - outstanding
            if sending and credit > 0:
                want = min(credit, _BATCH)
                if limit.count is not None:
                    want = min(want, limit.count - ledger.sent)
                payloads = ledger.payloads(sizes, want)
                try:
                    took = sock.send_batch([(p, target) for p in payloads])
                except BlockingIOError:
                    took = 0
                except OSError as exc:  # ECONNREFUSED: nothing listens any more
                    error = f"sending failed: {exc.strerror or exc}"
                    break
                ledger.sent_more(took)
                outstanding += took
            try:
                received = sock.recv_batch(batch)
            except BlockingIOError:
                received = 0
            except OSError as exc:
                error = f"receiving failed: {exc.strerror or exc}"
                break
            if received:
                for i in range(received):
                    ledger.receive(batch.payload(i))
                batch.release()
                outstanding = max(0, outstanding - received)
                last_echo = now
                continue
            if outstanding and now - last_echo >= STALL_SECONDS:
                outstanding = 0  # lost, most likely: stop holding the window
                stalls += 1
                last_echo = now
            if not sending or outstanding >= window:
                runtime.poll_once(_POLL)
        if sending:
            seconds = time.monotonic() - started
        stats = sock.stats.to_dict()
    finally:
        runtime.close()
        sock.close()
    return UdpResult(ledger, stats, seconds, stalls, error)


# -- TCP ----------------------------------------------------------------------------------------


@attrs.frozen
class TcpResult:
    """What the TCP client saw: one ledger per connection, how long it sent, errors."""

    ledgers: list[TcpLedger]
    seconds: float
    errors: list[str]


@attrs.define
class _Stream:
    stream: TcpStream
    ledger: TcpLedger
    token: Token | None = None
    out: memoryview | None = None
    closed_write: bool = False
    eof: bool = False
    failed: bool = False
    interest: Interest = Interest.READABLE


def _connect(driver: Driver, target: SocketAddress, config: NetConfig) -> TcpStream:
    stream = driver.connect_tcp(target, config)
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    runtime = driver.runtime(config)
    try:
        token = runtime.register(stream, Interest.WRITABLE)
        while not stream.finish_connect():
            if time.monotonic() >= deadline:
                stream.close()
                raise OSError(f"connecting to {target} took over {_CONNECT_TIMEOUT:.0f}s")
            runtime.poll_once(0.05)
        runtime.deregister(token)
    finally:
        runtime.close()
    return stream


def soak_tcp(
    driver: Driver,
    target: SocketAddress,
    *,
    sizes: SizePlan,
    connections: int,
    limit: Limit,
    grace: float,
    stop: StopFlag,
    progress: Callable[[Progress], None],
) -> TcpResult:
    """Soak ``target``'s TCP echo over ``connections`` streams of ``driver``; ``limit.count``
    counts records over all connections."""
    config = attrs.evolve(client_config(), tcp_nodelay=True)
    streams: list[_Stream] = []
    errors: list[str] = []
    runtime = driver.runtime(config)
    per_chunk = max(1, _TCP_CHUNK // sizes.high)
    buffer = memoryview(bytearray(MAX_SIZE + _TCP_CHUNK))
    try:
        streams.extend(
            _Stream(_connect(driver, target, config), TcpLedger()) for _ in range(connections)
        )
        by_token: dict[Token, _Stream] = {}
        for s in streams:
            s.token = runtime.register(s.stream, Interest.READABLE)
            by_token[s.token] = s
        started = last_report = time.monotonic()
        reported = 0
        sending = True
        seconds = 0.0
        drain_until = 0.0

        def records_sent() -> int:
            return sum(s.ledger.records_sent for s in streams)

        def bytes_echoed() -> int:
            return sum(s.ledger.bytes_echoed for s in streams)

        while True:
            now = time.monotonic()
            if sending and (stop.is_set() or limit.reached(now - started, records_sent())):
                sending = False
                seconds = now - started
                drain_until = now + max(grace, 2.0)
            if not sending and (all(s.eof or s.failed for s in streams) or now >= drain_until):
                break
            if now - last_report >= PROGRESS_INTERVAL:
                echoed = bytes_echoed()
                progress(Progress("tcp", now - started,
                                  sum(s.ledger.bytes_sent for s in streams), echoed, None,
                                  (echoed - reported) / (now - last_report), " B"))
                last_report, reported = now, echoed
            for s in streams:
                _plan_writes(s, sending, sizes, per_chunk, limit, records_sent)
                if s.token is not None and not s.failed:
                    want = Interest.READABLE | (Interest.WRITABLE if s.out is not None
                                                else Interest(0))
                    if want != s.interest:
                        runtime.reregister(s.token, want)
                        s.interest = want
            for event in runtime.poll_once(0.05):
                s = by_token[event.token]
                if s.failed:
                    continue
                try:
                    if event.writable and s.out is not None:
                        _write(s)
                    if event.readable:
                        _read(s, buffer)
                        if s.eof and s.token is not None:
                            runtime.deregister(s.token)  # level-triggered: else it spins
                            s.token = None
                except OSError as exc:
                    s.failed = True
                    errors.append(f"connection {streams.index(s)}: {exc.strerror or exc}")
                    runtime.deregister(event.token)
                    s.token = None
        if sending:
            seconds = time.monotonic() - started
    finally:
        for s in streams:
            s.stream.close()
        runtime.close()
    for i, s in enumerate(streams):
        if not s.eof and not s.failed:
            errors.append(f"connection {i}: the server did not close within the grace period")
    return TcpResult([s.ledger for s in streams], seconds, errors)


def _plan_writes(s: _Stream, sending: bool, sizes: SizePlan, per_chunk: int, limit: Limit,
                 records_sent: Callable[[], int]) -> None:
    """Queue the next chunk when there is room, or the half close once sending is over."""
    if s.out is not None or s.failed or s.closed_write:
        return
    if sending:
        if s.ledger.in_flight >= TCP_WINDOW:
            return
        count = per_chunk
        if limit.count is not None:
            count = min(count, limit.count - records_sent())
        if count > 0:
            s.out = memoryview(s.ledger.records(sizes, count))
            return
        return
    s.stream.shutdown_write()
    s.closed_write = True


def _write(s: _Stream) -> None:
    out = s.out
    assert out is not None
    try:
        sent = s.stream.send(out)
    except BlockingIOError:
        return
    s.out = out[sent:] if sent < len(out) else None


def _read(s: _Stream, buffer: memoryview) -> None:
    for _ in range(16):
        try:
            n = s.stream.recv_into(buffer)
        except BlockingIOError:
            return
        if n == 0:
            s.eof = True
            return
        s.ledger.receive(buffer[:n])
        if n < len(buffer):
            return
