"""The benchmark machinery behind ``horizon bench``: no driver lives here.

``loadgen`` is the load generator (C with the GIL released, Linux), ``peers`` the echo servers
Horizon is compared with (stdlib, asyncio, uvloop, anyio, and ``c``: ``reference``, the C echo
server that marks the machine's limit), ``child`` the process that runs one
server or one load, ``runner`` the parent side that starts and pins them, ``latency`` the
percentile summaries, ``tcp_client`` the Python TCP client used where the load generator is not
built, and ``plot`` the optional matplotlib figures. The command itself is
:mod:`horizon_drivers.cli.bench`.
"""
