# Win32/Winsock error codes -> Python exceptions, for every part of the IOCP driver
# (included by iocp.pyx).


def _error(code, what):
    """The Python exception for Win32/Winsock error ``code`` during ``what``.

    The errno of each is the ``errno`` module's constant on this platform (what callers compare
    with), never a number copied from Linux; the Windows code stays in ``winerror``.
    """
    code = int(code)
    message = f"{what}: Windows error {code}"
    if code == WSAEWOULDBLOCK:
        return BlockingIOError(_errno.EWOULDBLOCK, f"{what} would block")
    if code in (ERROR_CONNECTION_REFUSED, WSAECONNREFUSED, ERROR_PORT_UNREACHABLE):
        return ConnectionRefusedError(_errno.ECONNREFUSED, message)
    if code in (ERROR_NETNAME_DELETED, WSAECONNRESET, WSAENETRESET):
        return ConnectionResetError(_errno.ECONNRESET, message)
    if code in (ERROR_CONNECTION_ABORTED, WSAECONNABORTED):
        return ConnectionAbortedError(_errno.ECONNABORTED, message)
    if code in (ERROR_SEM_TIMEOUT, WSAETIMEDOUT):
        return TimeoutError(_errno.ETIMEDOUT, message)
    return OSError(0, message, None, code)
