# Declarations from <linux/errqueue.h> and the MSG_ZEROCOPY constants (<sys/socket.h>,
# asm-generic/socket.h), with Linux's numbers where older headers lack them.

from libc.stdint cimport uint8_t, uint32_t


cdef extern from * nogil:
    """
    #include <sys/socket.h>
    #include <netinet/in.h>
    #include <linux/errqueue.h>
    #ifndef SO_ZEROCOPY
    #define SO_ZEROCOPY 60
    #endif
    #ifndef MSG_ZEROCOPY
    #define MSG_ZEROCOPY 0x4000000
    #endif
    #ifndef MSG_ERRQUEUE
    #define MSG_ERRQUEUE 0x2000
    #endif
    #ifndef SO_EE_ORIGIN_ZEROCOPY
    #define SO_EE_ORIGIN_ZEROCOPY 5
    #endif
    #ifndef SO_EE_CODE_ZEROCOPY_COPIED
    #define SO_EE_CODE_ZEROCOPY_COPIED 1
    #endif
    #ifndef IP_RECVERR
    #define IP_RECVERR 11
    #endif
    #ifndef IPV6_RECVERR
    #define IPV6_RECVERR 25
    #endif
    """
    enum:
        SO_ZEROCOPY
        MSG_ZEROCOPY
        MSG_ERRQUEUE
        SO_EE_ORIGIN_ZEROCOPY
        SO_EE_CODE_ZEROCOPY_COPIED
        IP_RECVERR
        IPV6_RECVERR

    struct sock_extended_err:
        uint32_t ee_errno
        uint8_t ee_origin
        uint8_t ee_type
        uint8_t ee_code
        uint8_t ee_pad
        uint32_t ee_info
        uint32_t ee_data
