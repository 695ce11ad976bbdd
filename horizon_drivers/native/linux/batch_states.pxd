# The core's bulk receive transitions (Batch.begin_receive / commit_receive) done in C for the
# Linux driver's recv_batch, cimported by udp.pyx; batch_states.pyx says why and how they stay
# equal to the core's.

cdef int begin_receive(object batch, Py_ssize_t *first, Py_ssize_t *count) except -1
cdef int commit_receive(object batch, Py_ssize_t filled) except -1
