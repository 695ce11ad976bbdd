# The Microsoft extensions from <mswsock.h>: AcceptEx and ConnectEx, reached through
# WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER) as Microsoft documents (so nothing links
# mswsock.lib), and the socket options that finish an accept or a connect. Windows only.

from horizon_drivers.native.windows.winbase cimport BOOL, DWORD, OVERLAPPED
from horizon_drivers.native.windows.winsock2 cimport SOCKET, sockaddr

cdef extern from *:
    """
    #include <mswsock.h>

    /* The function pointers belong to the TCP/IP provider; every TCP socket shares it, so
       they are looked up once, on the first socket that needs them. */
    static LPFN_ACCEPTEX horizon_acceptex_fn = NULL;
    static LPFN_CONNECTEX horizon_connectex_fn = NULL;

    static int horizon_load_extensions(SOCKET s) {
        GUID accept_id = WSAID_ACCEPTEX, connect_id = WSAID_CONNECTEX;
        DWORD n = 0;
        if (horizon_acceptex_fn == NULL &&
            WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &accept_id, sizeof accept_id,
                     &horizon_acceptex_fn, sizeof horizon_acceptex_fn, &n, NULL, NULL) != 0)
            return WSAGetLastError();
        if (horizon_connectex_fn == NULL &&
            WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &connect_id, sizeof connect_id,
                     &horizon_connectex_fn, sizeof horizon_connectex_fn, &n, NULL, NULL) != 0)
            return WSAGetLastError();
        return 0;
    }

    static BOOL horizon_acceptex(SOCKET listener, SOCKET accepted, void *out, DWORD addrlen,
                                 DWORD *received, OVERLAPPED *ov) {
        return horizon_acceptex_fn(listener, accepted, out, 0, addrlen, addrlen, received, ov);
    }

    static BOOL horizon_connectex(SOCKET s, const struct sockaddr *name, int namelen,
                                  OVERLAPPED *ov) {
        return horizon_connectex_fn(s, name, namelen, NULL, 0, NULL, ov);
    }
    """
    int SO_UPDATE_ACCEPT_CONTEXT
    int SO_UPDATE_CONNECT_CONTEXT
    int horizon_load_extensions(SOCKET s) nogil
    BOOL horizon_acceptex(SOCKET listener, SOCKET accepted, void *out, DWORD addrlen,
                          DWORD *received, OVERLAPPED *ov) nogil
    BOOL horizon_connectex(SOCKET s, const sockaddr *name, int namelen, OVERLAPPED *ov) nogil
