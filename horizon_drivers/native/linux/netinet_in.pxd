# Declarations from <netinet/in.h> and <netinet/udp.h>: IPv4/IPv6 socket addresses and the
# protocol-level constants the Linux driver reads control messages with.

from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef extern from "<netinet/in.h>" nogil:
    ctypedef uint16_t in_port_t
    ctypedef uint32_t in_addr_t

    struct in_addr:
        in_addr_t s_addr

    struct in6_addr:
        uint8_t s6_addr[16]

    struct sockaddr_in:
        unsigned short sin_family
        in_port_t sin_port
        in_addr sin_addr

    struct sockaddr_in6:
        unsigned short sin6_family
        in_port_t sin6_port
        uint32_t sin6_flowinfo      # network byte order, as on the wire
        in6_addr sin6_addr
        uint32_t sin6_scope_id      # host byte order

    enum:
        IPPROTO_IP
        IPPROTO_IPV6
        IPPROTO_TCP
        IPPROTO_UDP

    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)


cdef extern from * nogil:
    """
    #include <netinet/udp.h>
    #ifndef SOL_UDP
    #define SOL_UDP 17
    #endif
    #ifndef UDP_SEGMENT
    #define UDP_SEGMENT 103
    #endif
    #ifndef UDP_GRO
    #define UDP_GRO 104
    #endif
    """
    enum:
        SOL_UDP
        UDP_SEGMENT
        UDP_GRO
