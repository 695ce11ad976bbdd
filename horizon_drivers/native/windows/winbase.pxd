# Declarations from <windows.h> (minwinbase.h, ioapiset.h): handles, OVERLAPPED and the I/O
# completion port calls. Windows only; cimported by iocp.pyx.
#
# <winsock2.h> must be included before <windows.h>, or windows.h pulls in the old winsock.h
# and the two clash: the empty block below makes Cython emit that include first.

cdef extern from "winsock2.h":
    pass

cdef extern from "windows.h" nogil:
    ctypedef unsigned long DWORD
    ctypedef unsigned long ULONG
    ctypedef int BOOL
    ctypedef unsigned char UCHAR
    ctypedef void *HANDLE
    ctypedef size_t ULONG_PTR

    HANDLE INVALID_HANDLE_VALUE
    DWORD INFINITE
    DWORD WAIT_TIMEOUT

    # Win32 error codes this driver tells apart (winerror.h).
    DWORD ERROR_OPERATION_ABORTED      # 995: the operation was cancelled (CancelIoEx, closesocket)
    DWORD ERROR_MORE_DATA              # 234: datagram longer than the buffer (STATUS_BUFFER_OVERFLOW)
    DWORD ERROR_NETNAME_DELETED        # 64: TCP reset while a receive was pending
    DWORD ERROR_CONNECTION_REFUSED     # 1225
    DWORD ERROR_CONNECTION_ABORTED     # 1236
    DWORD ERROR_PORT_UNREACHABLE       # 1234: ICMP port unreachable on a UDP receive
    DWORD ERROR_HOST_UNREACHABLE       # 1232
    DWORD ERROR_NETWORK_UNREACHABLE    # 1231
    DWORD ERROR_SEM_TIMEOUT            # 121
    DWORD ERROR_NOT_FOUND              # 1168: CancelIoEx found nothing to cancel

    ctypedef struct OVERLAPPED:
        ULONG_PTR Internal             # the NTSTATUS of the finished operation
        ULONG_PTR InternalHigh         # bytes transferred
        HANDLE hEvent

    ctypedef struct OVERLAPPED_ENTRY:
        ULONG_PTR lpCompletionKey
        OVERLAPPED *lpOverlapped
        ULONG_PTR Internal
        DWORD dwNumberOfBytesTransferred

    UCHAR FILE_SKIP_COMPLETION_PORT_ON_SUCCESS
    UCHAR FILE_SKIP_SET_EVENT_ON_HANDLE

    HANDLE CreateIoCompletionPort(HANDLE file, HANDLE port, ULONG_PTR key, DWORD threads)
    BOOL GetQueuedCompletionStatusEx(HANDLE port, OVERLAPPED_ENTRY *entries, ULONG count,
                                     ULONG *removed, DWORD milliseconds, BOOL alertable)
    BOOL PostQueuedCompletionStatus(HANDLE port, DWORD nbytes, ULONG_PTR key, OVERLAPPED *ov)
    BOOL SetFileCompletionNotificationModes(HANDLE file, UCHAR flags)
    BOOL GetOverlappedResult(HANDLE file, OVERLAPPED *ov, DWORD *nbytes, BOOL wait)
    BOOL CancelIoEx(HANDLE file, OVERLAPPED *ov)
    BOOL CloseHandle(HANDLE handle)
    DWORD GetLastError()
