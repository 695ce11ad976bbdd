# The hub: the one completion port of the process, the operation records (IoOp, _Core) every
# socket keeps in flight on it, and harvesting its completions (GetQueuedCompletionStatusEx) to
# dispatch them to their sockets. Included by iocp.pyx.


cdef enum:
    NAME_BYTES = 128          # room for any sockaddr (SOCKADDR_STORAGE)
    HARVEST_MAX = 256         # completions dequeued per GetQueuedCompletionStatusEx call
    ACCEPT_DEPTH = 8          # AcceptEx operations a listener keeps posted
    ACCEPT_ADDRLEN = 28 + 16  # sizeof(sockaddr_in6) + 16, as AcceptEx asks
    OP_RECV_FROM = 1
    OP_RECV = 2
    OP_SEND = 3
    OP_CONNECT = 4
    OP_ACCEPT = 5
    READABLE = 1
    WRITABLE = 2
    ERROR = 4
    HANGUP = 8

cdef ULONG_PTR KEY_IO = 1     # completion key of every socket's operations
cdef ULONG_PTR KEY_WAKE = 2   # PostQueuedCompletionStatus wake-ups; lpOverlapped = runtime id

#: Seconds close() waits for the completions of its cancelled operations before giving up
#: (and keeping their memory alive forever rather than freeing what the kernel may write).
CLOSE_DRAIN_SECONDS = 5.0

cdef struct _Name:
    unsigned long long words[16]      # NAME_BYTES, 8-byte aligned

cdef struct _Core

cdef struct IoOp:
    OVERLAPPED ov                     # first: the OVERLAPPED pointer is the IoOp pointer
    int kind
    int index                         # ring slot (UDP) or AcceptEx slot (listener)
    int pending                       # 1 while the kernel owns the operation
    _Core *core
    WSABUF buf
    DWORD flags
    int namelen
    _Name name
    SOCKET accepted                   # AcceptEx: the socket the connection lands in
    unsigned char accept_out[2 * ACCEPT_ADDRLEN]

cdef struct _Core:
    SOCKET sock
    int pending                       # operations in flight
    int orphaned                      # its owner gave up waiting: free it at pending == 0
    PyObject *owner                   # borrowed; NULL once the Python object is gone
    int nops
    IoOp *ops


cdef HANDLE _port = NULL
_graveyard = []                       # memory kept for operations that never completed
_runtimes = _weakref.WeakValueDictionary()   # runtime id -> Runtime, for wake-ups
_blocked = set()                      # ids of runtimes waiting in GetQueuedCompletionStatusEx
cdef uint64_t _next_runtime_id = 1


cdef inline DWORD _status_of(IoOp *op) noexcept nogil:
    """The Win32 error of a finished operation (0 on success) from its NTSTATUS."""
    cdef DWORD ignored = 0
    if op.ov.Internal == 0:
        return 0
    if GetOverlappedResult(<HANDLE>op.core.sock, &op.ov, &ignored, 0):
        return 0
    return GetLastError()


cdef int _associate(SOCKET sock) except -1:
    if CreateIoCompletionPort(<HANDLE>sock, _port, KEY_IO, 0) == NULL:
        raise _error(GetLastError(), "CreateIoCompletionPort")
    if not SetFileCompletionNotificationModes(
            <HANDLE>sock, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE):
        raise _error(GetLastError(), "SetFileCompletionNotificationModes")
    return 0


cdef _Core *_new_core(SOCKET sock, int nops, object owner) except NULL:
    cdef _Core *core = <_Core *>calloc(1, sizeof(_Core))
    cdef int i
    if core == NULL:
        raise MemoryError("cannot allocate the socket's operation records")
    core.ops = <IoOp *>calloc(nops, sizeof(IoOp))
    if core.ops == NULL:
        free(core)
        raise MemoryError("cannot allocate the socket's operation records")
    core.sock = sock
    core.nops = nops
    core.owner = <PyObject *>owner
    for i in range(nops):
        core.ops[i].core = core
        core.ops[i].index = i
        core.ops[i].accepted = INVALID_SOCKET
    return core


cdef void _free_core(_Core *core) noexcept:
    free(core.ops)
    free(core)


cdef inline void _begin(IoOp *op) noexcept:
    memset(&op.ov, 0, sizeof(OVERLAPPED))
    op.pending = 1
    op.core.pending += 1


cdef inline void _end(IoOp *op) noexcept:
    op.pending = 0
    op.core.pending -= 1


cdef int _settle(IoOp *op, DWORD nbytes) except -1:
    """A completion packet for ``op`` arrived: account it, then tell its owner."""
    cdef _Core *core = op.core
    cdef DWORD err = _status_of(op)
    if not op.pending:
        return 0   # never expected; ignoring beats completing a slot twice
    _end(op)
    if core.owner == NULL:
        # The Python object died while this was in flight; only memory is left to release.
        if op.kind == OP_ACCEPT and op.accepted != INVALID_SOCKET:
            closesocket(op.accepted)
            op.accepted = INVALID_SOCKET
        if core.orphaned and core.pending == 0:
            _free_core(core)
        return 0
    return (<_Endpoint>core.owner)._completed(op, nbytes, err)


cdef void _post_wake(uint64_t runtime_id) noexcept:
    PostQueuedCompletionStatus(_port, 0, KEY_WAKE, <OVERLAPPED *><ULONG_PTR>runtime_id)


cdef int _harvest(DWORD timeout_ms, Runtime harvester) except -1:
    """Dequeue up to HARVEST_MAX completions (waiting ``timeout_ms`` for the first), dispatch.

    Returns the number of I/O completions. A wake-up for ``harvester`` sets its ``_woken``;
    one for another runtime is forwarded to it. Other runtimes blocked in a wait are nudged
    when this harvest took I/O completions that may be theirs.
    """
    cdef OVERLAPPED_ENTRY entries[HARVEST_MAX]
    cdef ULONG n = 0, i
    cdef BOOL ok
    cdef DWORD err = 0
    cdef int ios = 0
    cdef uint64_t target
    with nogil:
        ok = GetQueuedCompletionStatusEx(_port, entries, HARVEST_MAX, &n, timeout_ms, 0)
        if not ok:
            err = GetLastError()
    if not ok:
        if err == WAIT_TIMEOUT:
            return 0
        raise _error(err, "GetQueuedCompletionStatusEx")
    failure = None
    for i in range(n):
        if entries[i].lpCompletionKey == KEY_WAKE:
            target = <uint64_t><ULONG_PTR>entries[i].lpOverlapped
            if harvester is not None and harvester._id == target:
                harvester._woken = True
            else:
                other = _runtimes.get(target)
                if other is not None:
                    (<Runtime>other)._woken = True
                    if target in _blocked:
                        _post_wake(target)
            continue
        ios += 1
        try:
            _settle(<IoOp *>entries[i].lpOverlapped, entries[i].dwNumberOfBytesTransferred)
        except BaseException as exc:  # settle every entry, then report the first failure
            if failure is None:
                failure = exc
    if ios and _blocked:
        for target in list(_blocked):
            if harvester is None or target != harvester._id:
                _post_wake(target)
    if failure is not None:
        raise failure
    return ios


def harvest(timeout=0.0):
    """Dispatch queued completions, waiting up to ``timeout`` seconds for the first one.

    Socket calls and ``Runtime.poll_once`` do this themselves; it is public for tests and for
    programs that drive sockets without a Runtime. Returns the number of I/O completions.
    """
    return _harvest(_milliseconds(timeout), None)


cdef DWORD _milliseconds(object timeout) except? 0xFFFFFFFE:
    if timeout is None:
        return INFINITE
    seconds = float(timeout)
    if not seconds >= 0.0:
        raise ValueError(f"timeout must be None or seconds >= 0, got {timeout!r}")
    if seconds * 1000.0 >= 0xFFFFFFF0:
        return 0xFFFFFFF0
    return <DWORD>_math.ceil(seconds * 1000.0)


def _init_hub():
    global _port
    _socket.socket  # the socket module has called WSAStartup
    _port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0)
    if _port == NULL:
        raise _error(GetLastError(), "CreateIoCompletionPort")
