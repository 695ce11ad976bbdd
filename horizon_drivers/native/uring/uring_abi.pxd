# Declarations from the vendored uring_abi.h: the io_uring kernel ABI (see that header for why
# it is vendored rather than taken from liburing or <linux/io_uring.h>).

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "uring_abi.h" nogil:
    struct hz_sqring_offsets:
        uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array
        uint64_t user_addr

    struct hz_cqring_offsets:
        uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags
        uint64_t user_addr

    struct hz_uring_params:
        uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd
        hz_sqring_offsets sq_off
        hz_cqring_offsets cq_off

    struct hz_uring_sqe:
        uint8_t opcode
        uint8_t flags
        uint16_t ioprio
        int32_t fd
        uint64_t off
        uint64_t addr
        uint32_t len
        uint32_t op_flags
        uint64_t user_data
        uint16_t buf_group
        uint16_t personality
        int32_t file_index
        uint64_t addr3
        uint64_t pad2

    struct hz_uring_cqe:
        uint64_t user_data
        int32_t res
        uint32_t flags

    struct hz_uring_buf:
        uint64_t addr
        uint32_t len
        uint16_t bid
        uint16_t resv

    struct hz_uring_buf_reg:
        uint64_t ring_addr
        uint32_t ring_entries
        uint16_t bgid
        uint16_t flags

    struct hz_uring_recvmsg_out:
        uint32_t namelen, controllen, payloadlen, flags

    struct hz_uring_probe_op:
        uint8_t op
        uint16_t flags

    struct hz_uring_probe:
        uint8_t last_op, ops_len
        hz_uring_probe_op ops[256]

    struct hz_uring_getevents_arg:
        uint64_t sigmask
        uint32_t sigmask_sz
        uint64_t ts

    struct hz_kernel_timespec:
        int64_t tv_sec
        long long tv_nsec

    enum:
        HZ_OP_NOP, HZ_OP_POLL_ADD, HZ_OP_SENDMSG, HZ_OP_RECVMSG, HZ_OP_ACCEPT,
        HZ_OP_ASYNC_CANCEL, HZ_OP_CONNECT, HZ_OP_SEND, HZ_OP_RECV, HZ_OP_MSG_RING,
        HZ_OP_SEND_ZC, HZ_OP_SENDMSG_ZC, HZ_OP_LAST_KNOWN
        HZ_IOSQE_FIXED_FILE, HZ_IOSQE_BUFFER_SELECT, HZ_IOSQE_CQE_SKIP_SUCCESS
        HZ_RECV_MULTISHOT, HZ_RECVSEND_BUNDLE, HZ_ACCEPT_MULTISHOT, HZ_POLL_ADD_MULTI
        HZ_ASYNC_CANCEL_ALL, HZ_ASYNC_CANCEL_FD
        HZ_CQE_F_BUFFER, HZ_CQE_F_MORE, HZ_CQE_BUFFER_SHIFT
        HZ_SETUP_SQPOLL, HZ_SETUP_CQSIZE, HZ_SETUP_CLAMP, HZ_SETUP_SUBMIT_ALL
        HZ_SETUP_COOP_TASKRUN, HZ_SETUP_TASKRUN_FLAG, HZ_SETUP_SINGLE_ISSUER, HZ_SETUP_DEFER_TASKRUN
        HZ_SQ_NEED_WAKEUP, HZ_SQ_CQ_OVERFLOW, HZ_SQ_TASKRUN
        HZ_ENTER_GETEVENTS, HZ_ENTER_SQ_WAKEUP, HZ_ENTER_EXT_ARG
        HZ_FEAT_SINGLE_MMAP, HZ_FEAT_NODROP, HZ_FEAT_EXT_ARG, HZ_FEAT_FAST_POLL
        HZ_FEAT_RECVSEND_BUNDLE
        HZ_REGISTER_FILES, HZ_UNREGISTER_FILES, HZ_REGISTER_PROBE
        HZ_REGISTER_PBUF_RING, HZ_UNREGISTER_PBUF_RING
        HZ_IO_URING_OP_SUPPORTED
        HZ_OFF_SQ_RING, HZ_OFF_CQ_RING, HZ_OFF_SQES

    int hz_uring_setup(unsigned entries, hz_uring_params *p)
    int hz_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                       void *arg, size_t argsz)
    int hz_uring_register(int fd, unsigned opcode, void *arg, unsigned nr_args)
    uint32_t hz_load_acquire(const uint32_t *p)
    void hz_store_release(uint32_t *p, uint32_t v)
    void hz_store_release16(uint16_t *p, uint16_t v)
    uint32_t hz_load_relaxed(const uint32_t *p)
