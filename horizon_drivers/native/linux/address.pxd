# C-level address conversions shared by the Linux driver modules (cimported, not imported).

from horizon_drivers.native.linux.sys_socket cimport sockaddr, socklen_t
from horizon_drivers.native.linux.netinet_in cimport sockaddr_in6

cdef object address_from_sockaddr(const sockaddr *sa, socklen_t salen)
cdef int sockaddr_from_address(object address, int family, sockaddr_in6 *out,
                               socklen_t *outlen) except -1
cdef object local_address_of(int fd)
cdef object peer_address_of(int fd)
cdef int raise_errno(int err, str context=*) except -1
