"""The compiled module of the io_uring driver (``uring``), cut into includes by concern.

Import the driver as :mod:`horizon_drivers.uring`. ``uring.pyx`` includes ``ring.pxi`` (setup,
mapping, submission, completion), ``buffer_ring.pxi`` (the provided-buffer ring over a
BufferPool), ``udp.pxi``, ``runtime.pxi`` and ``probe.pxi``; ``uring_abi.h``/``uring_abi.pxd``
declare the kernel interface.
"""
