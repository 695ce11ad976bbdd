"""The compiled modules of the Linux epoll driver, one per concern.

Import the driver as :mod:`horizon_drivers.native`; these modules are its parts:
``epoll`` (the Runtime), ``udp`` (batch UDP on recvmmsg/sendmmsg with GSO/GRO), ``tcp`` (streams and
listeners), ``descriptor`` (the owned-descriptor base and buffer I/O), ``address`` (sockaddr
conversions). The ``.pxd`` files named after C headers (``sys_socket``, ``sys_epoll``,
``netinet_in``...) declare what the modules take from them.
"""
