# Socket addresses for the IOCP driver: AddressLike -> sockaddr and back, through the codec
# shared with the Linux driver (native/sockaddr_codec.pxd). Included by iocp.pyx.


cdef int _sockaddr_of(object address, int family, unsigned char *name, int *namelen) except -1:
    """Any AddressLike -> sockaddr for a socket of ``family`` (see sockaddr_codec.pxd).

    An IPv6 address (not v4-mapped) for an IPv4 socket raises ``wrong_family_error``
    (EAFNOSUPPORT), as every driver does.
    """
    cdef bytearray packed = bytearray(PACKED_SIZE)
    cdef unsigned char *raw = packed
    cdef int rc
    sa = as_socket_address(address)
    sa.pack_into(packed, 0)
    rc = unpack_sockaddr(raw, family, name)
    if rc == SOCKADDR_WRONG_FAMILY:
        raise wrong_family_error(sa, 4)
    if rc <= 0:
        raise ValueError(f"cannot convert {address!r} to a socket address")
    namelen[0] = rc
    return 0


cdef object _address_from(const unsigned char *name, int namelen):
    cdef unsigned char packed[PACKED_SIZE]
    pack_sockaddr(name, namelen, packed)
    return SocketAddress.unpack_from(bytes(packed[:PACKED_SIZE]), 0)
