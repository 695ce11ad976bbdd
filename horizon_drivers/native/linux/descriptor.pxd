# The socket descriptor the Linux driver classes own, and the EINTR-safe one-buffer calls they
# share (cimported, not imported).

from horizon_drivers.native.linux.sys_socket cimport sockaddr, socklen_t


cdef class OwnedDescriptor:
    cdef int _fd
    cdef int _family
    cdef int _busy
    cdef bint _closed
    cdef str _kind
    cdef object _options
    cdef readonly object config
    cdef object __weakref__

    cdef int _adopt(self, object sock, int socktype, object options, object config) except -1
    cdef int _enter(self, str operation) except -1
    cdef void _leave(self) noexcept


cdef ssize_t send_buffer(int fd, object data, int flags, const sockaddr *name,
                         socklen_t namelen, int *err) except -2
cdef ssize_t recv_buffer(int fd, object buffer, int flags, sockaddr *name, socklen_t *namelen,
                         Py_ssize_t *capacity, int *err) except -2
