# Declarations from <sys/socket.h> (plus the accept4/recvmmsg/sendmmsg GNU extensions,
# which setup.py enables with _GNU_SOURCE). Only what the Linux driver uses.

from posix.uio cimport iovec
from posix.time cimport timespec


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t

    struct sockaddr:
        sa_family_t sa_family

    struct sockaddr_storage:
        sa_family_t ss_family

    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len

    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type

    # Macros: Cython calls them like functions.
    cmsghdr *CMSG_FIRSTHDR(msghdr *msgh)
    cmsghdr *CMSG_NXTHDR(msghdr *msgh, cmsghdr *cmsg)
    unsigned char *CMSG_DATA(cmsghdr *cmsg)
    size_t CMSG_SPACE(size_t length)
    size_t CMSG_LEN(size_t length)

    enum:
        AF_UNSPEC
        AF_INET
        AF_INET6
        SOCK_STREAM
        SOCK_DGRAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_ERROR
        SO_TYPE
        SO_DOMAIN
        MSG_DONTWAIT
        MSG_TRUNC
        MSG_CTRUNC
        MSG_NOSIGNAL
        MSG_WAITFORONE
        SHUT_RD
        SHUT_WR
        SHUT_RDWR

    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr *addr, socklen_t addrlen)
    int accept4(int fd, sockaddr *addr, socklen_t *addrlen, int flags)
    int shutdown(int fd, int how)
    int getsockname(int fd, sockaddr *addr, socklen_t *addrlen)
    int getpeername(int fd, sockaddr *addr, socklen_t *addrlen)
    int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
    int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)

    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t sendto(int fd, const void *buf, size_t n, int flags,
                   const sockaddr *addr, socklen_t addrlen)
    ssize_t recvfrom(int fd, void *buf, size_t n, int flags,
                     sockaddr *addr, socklen_t *addrlen)
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)
    ssize_t recvmsg(int fd, msghdr *msg, int flags)
    int sendmmsg(int fd, mmsghdr *vmessages, unsigned int vlen, int flags)
    int recvmmsg(int fd, mmsghdr *vmessages, unsigned int vlen, int flags, timespec *tmo)


cdef extern from * nogil:
    """
    #include <sys/socket.h>
    /* Linux numbers for options older libc headers may lack (asm-generic/socket.h). */
    #ifndef SO_RXQ_OVFL
    #define SO_RXQ_OVFL 40
    #endif
    #ifndef SO_MEMINFO
    #define SO_MEMINFO 55
    #endif
    /* SO_MEMINFO's array index of the socket's drop count (linux/sock_diag.h). */
    #define HORIZON_SK_MEMINFO_DROPS 8
    /* recvmmsg/sendmmsg silently cap vlen at UIO_MAXIOV (1024). */
    #define HORIZON_MAX_MMSG 1024
    """
    enum:
        SO_RXQ_OVFL
        SO_MEMINFO
        HORIZON_SK_MEMINFO_DROPS
        HORIZON_MAX_MMSG
