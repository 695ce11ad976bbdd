"""The compiled module of the Windows IOCP driver.

Import the driver as :mod:`horizon_drivers.iocp`; ``iocp`` here is its extension, built only on
Windows (or cross-compiled for Wine by ``.ci/wine/run``). The ``.pxd`` files named after C headers
(``winbase``, ``winsock2``, ``mswsock``) declare what it takes from them.
"""
