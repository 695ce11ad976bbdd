# Declarations from <poll.h>: the load generator waits on one socket with a loss timeout.

cdef extern from "<poll.h>" nogil:
    ctypedef unsigned long nfds_t

    struct pollfd:
        int fd
        short events
        short revents

    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP

    int poll(pollfd *fds, nfds_t nfds, int timeout)
