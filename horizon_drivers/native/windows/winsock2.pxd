# Declarations from <winsock2.h> and <ws2tcpip.h>. Windows only.
#
# Addresses are handled as raw bytes at the fixed offsets both sockaddr layouts share with
# Linux (family u16 at 0, port at 2; IPv4 address at 4; IPv6 flowinfo at 4, address at 8,
# scope id at 24; native/sockaddr_codec.pxd), so only the opaque struct is declared; it is declared as a struct, not a
# ctypedef struct, as mingw-w64's headers need.

from horizon_drivers.native.windows.winbase cimport DWORD, ULONG, OVERLAPPED

cdef extern from "winsock2.h" nogil:
    ctypedef unsigned long long SOCKET   # UINT_PTR on win64
    SOCKET INVALID_SOCKET
    int SOCKET_ERROR

    struct sockaddr:
        unsigned short sa_family

    ctypedef struct WSABUF:
        ULONG len
        char *buf

    struct linger:
        unsigned short l_onoff
        unsigned short l_linger

    int AF_INET
    int AF_INET6
    int SOCK_STREAM
    int SOCK_DGRAM
    int IPPROTO_TCP
    int IPPROTO_UDP
    int SOL_SOCKET
    int SO_LINGER
    int SD_SEND
    int SD_BOTH
    DWORD WSA_FLAG_OVERLAPPED
    DWORD WSA_FLAG_NO_HANDLE_INHERIT
    DWORD SIO_UDP_CONNRESET

    int WSAEWOULDBLOCK
    int WSA_IO_PENDING
    int WSAEMSGSIZE
    int WSAECONNRESET
    int WSAECONNREFUSED
    int WSAECONNABORTED
    int WSAENOTCONN
    int WSAESHUTDOWN
    int WSAETIMEDOUT
    int WSAENETRESET

    int WSAGetLastError()
    SOCKET WSASocketW(int af, int type, int protocol, void *info, unsigned int group, DWORD flags)
    int closesocket(SOCKET s)
    int shutdown(SOCKET s, int how)
    int connect(SOCKET s, const sockaddr *name, int namelen)
    int getsockname(SOCKET s, sockaddr *name, int *namelen)
    int getpeername(SOCKET s, sockaddr *name, int *namelen)
    int setsockopt(SOCKET s, int level, int name, const char *value, int length)
    int WSAIoctl(SOCKET s, DWORD code, void *inbuf, DWORD inlen, void *outbuf, DWORD outlen,
                 DWORD *returned, OVERLAPPED *ov, void *routine)
    int WSARecvFrom(SOCKET s, WSABUF *buffers, DWORD count, DWORD *received, DWORD *flags,
                    sockaddr *source, int *sourcelen, OVERLAPPED *ov, void *routine)
    int WSASendTo(SOCKET s, WSABUF *buffers, DWORD count, DWORD *sent, DWORD flags,
                  const sockaddr *target, int targetlen, OVERLAPPED *ov, void *routine)
    int WSARecv(SOCKET s, WSABUF *buffers, DWORD count, DWORD *received, DWORD *flags,
                OVERLAPPED *ov, void *routine)
    int WSASend(SOCKET s, WSABUF *buffers, DWORD count, DWORD *sent, DWORD flags,
                OVERLAPPED *ov, void *routine)

cdef extern from "ws2tcpip.h":
    pass
