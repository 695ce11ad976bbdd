# Win32/Winsock error codes -> Python exceptions, for every part of the IOCP driver
# (included by iocp.pyx).


def _error(code, what):
    """The Python exception for Win32/Winsock error ``code`` during ``what``."""
    code = int(code)
    message = f"{what}: Windows error {code}"
    if code == WSAEWOULDBLOCK:
        return BlockingIOError(11, f"{what} would block")
    if code in (ERROR_CONNECTION_REFUSED, WSAECONNREFUSED, ERROR_PORT_UNREACHABLE):
        return ConnectionRefusedError(111, message)
    if code in (ERROR_NETNAME_DELETED, WSAECONNRESET, WSAENETRESET):
        return ConnectionResetError(104, message)
    if code in (ERROR_CONNECTION_ABORTED, WSAECONNABORTED):
        return ConnectionAbortedError(103, message)
    if code in (ERROR_SEM_TIMEOUT, WSAETIMEDOUT):
        return TimeoutError(110, message)
    return OSError(0, message, None, code)
