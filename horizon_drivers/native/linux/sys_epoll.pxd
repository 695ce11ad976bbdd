# Declarations from <sys/epoll.h>.

from libc.stdint cimport uint32_t, uint64_t
from posix.time cimport timespec
from posix.signal cimport sigset_t


cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    # Packed on x86-64 by the header; Cython only needs the member names.
    struct epoll_event:
        uint32_t events
        epoll_data_t data

    enum:
        EPOLL_CLOEXEC
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLLET
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    # glibc >= 2.35, Linux >= 5.11 (ENOSYS before): nanosecond timeouts.
    int epoll_pwait2(int epfd, epoll_event *events, int maxevents,
                     const timespec *timeout, const sigset_t *sigmask)
