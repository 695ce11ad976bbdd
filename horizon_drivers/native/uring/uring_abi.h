/* The io_uring kernel ABI this driver uses, vendored.
 *
 * Why not liburing: pip users get no system packages, and vendoring liburing's source adds a
 * second build system for the few dozen lines the driver needs. The kernel ABI below is stable
 * (Linux never changes a released struct layout or opcode number), so the driver talks to the
 * kernel directly through syscall(2) and mmap(2).
 *
 * Why not <linux/io_uring.h>: a build host's header may predate multishot recvmsg (6.0) or
 * provided-buffer rings (5.19). Everything here carries an hz_/HZ_ prefix, so this header
 * compiles whatever the system's header says, and a running kernel that lacks a feature answers
 * EINVAL at run time, which the driver reports.
 */
#ifndef HORIZON_URING_ABI_H
#define HORIZON_URING_ABI_H

#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <signal.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

struct hz_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};

struct hz_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};

struct hz_uring_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
    uint32_t resv[3];
    struct hz_sqring_offsets sq_off;
    struct hz_cqring_offsets cq_off;
};

/* struct io_uring_sqe: 64 bytes; only the fields the driver sets are named. */
struct hz_uring_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t ioprio;      /* RECV/RECVMSG/ACCEPT: IORING_RECV_MULTISHOT, IORING_ACCEPT_MULTISHOT */
    int32_t fd;
    uint64_t off;         /* CONNECT: addrlen; ACCEPT: addrlen pointer */
    uint64_t addr;        /* buffer, msghdr, sockaddr or user_data to cancel */
    uint32_t len;         /* POLL_ADD: IORING_POLL_ADD_MULTI */
    uint32_t op_flags;    /* msg_flags, poll32_events, accept_flags, cancel_flags */
    uint64_t user_data;
    uint16_t buf_group;   /* IOSQE_BUFFER_SELECT: the provided-buffer ring */
    uint16_t personality;
    int32_t file_index;
    uint64_t addr3;
    uint64_t pad2;
};

struct hz_uring_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct hz_uring_buf {
    uint64_t addr;
    uint32_t len;
    uint16_t bid;
    uint16_t resv;        /* in bufs[0] this is the ring's tail */
};

struct hz_uring_buf_reg {
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid;
    uint16_t flags;
    uint64_t resv[3];
};

struct hz_uring_recvmsg_out {
    uint32_t namelen, controllen, payloadlen, flags;
};

struct hz_uring_probe_op {
    uint8_t op, resv;
    uint16_t flags;       /* HZ_IO_URING_OP_SUPPORTED */
    uint32_t resv2;
};

struct hz_uring_probe {
    uint8_t last_op, ops_len;
    uint16_t resv;
    uint32_t resv2[3];
    struct hz_uring_probe_op ops[256];
};

struct hz_uring_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz, pad;
    uint64_t ts;
};

struct hz_kernel_timespec {
    int64_t tv_sec;
    long long tv_nsec;
};

enum {
    HZ_OP_NOP = 0,
    HZ_OP_POLL_ADD = 6,
    HZ_OP_SENDMSG = 9,
    HZ_OP_RECVMSG = 10,
    HZ_OP_ACCEPT = 13,
    HZ_OP_ASYNC_CANCEL = 14,
    HZ_OP_CONNECT = 16,
    HZ_OP_SEND = 26,
    HZ_OP_RECV = 27,
    HZ_OP_MSG_RING = 40,
    HZ_OP_SEND_ZC = 47,
    HZ_OP_SENDMSG_ZC = 48,
    HZ_OP_LAST_KNOWN = 48,

    HZ_IOSQE_FIXED_FILE = 1 << 0,
    HZ_IOSQE_BUFFER_SELECT = 1 << 5,
    HZ_IOSQE_CQE_SKIP_SUCCESS = 1 << 6,

    HZ_RECV_MULTISHOT = 1 << 1,
    HZ_RECVSEND_BUNDLE = 1 << 4,
    HZ_ACCEPT_MULTISHOT = 1 << 0,
    HZ_POLL_ADD_MULTI = 1 << 0,
    HZ_ASYNC_CANCEL_ALL = 1 << 0,
    HZ_ASYNC_CANCEL_FD = 1 << 1,

    HZ_CQE_F_BUFFER = 1 << 0,
    HZ_CQE_F_MORE = 1 << 1,
    HZ_CQE_BUFFER_SHIFT = 16,

    HZ_SETUP_SQPOLL = 1 << 1,
    HZ_SETUP_CQSIZE = 1 << 3,
    HZ_SETUP_CLAMP = 1 << 4,
    HZ_SETUP_SUBMIT_ALL = 1 << 7,
    HZ_SETUP_COOP_TASKRUN = 1 << 8,
    HZ_SETUP_TASKRUN_FLAG = 1 << 9,
    HZ_SETUP_SINGLE_ISSUER = 1 << 12,
    HZ_SETUP_DEFER_TASKRUN = 1 << 13,

    HZ_SQ_NEED_WAKEUP = 1 << 0,
    HZ_SQ_CQ_OVERFLOW = 1 << 1,
    HZ_SQ_TASKRUN = 1 << 2,

    HZ_ENTER_GETEVENTS = 1 << 0,
    HZ_ENTER_SQ_WAKEUP = 1 << 1,
    HZ_ENTER_EXT_ARG = 1 << 3,

    HZ_FEAT_SINGLE_MMAP = 1 << 0,
    HZ_FEAT_NODROP = 1 << 1,
    HZ_FEAT_EXT_ARG = 1 << 8,
    HZ_FEAT_FAST_POLL = 1 << 5,
    HZ_FEAT_RECVSEND_BUNDLE = 1 << 14,

    HZ_REGISTER_FILES = 2,
    HZ_UNREGISTER_FILES = 3,
    HZ_REGISTER_PROBE = 8,
    HZ_REGISTER_PBUF_RING = 22,
    HZ_UNREGISTER_PBUF_RING = 23,

    HZ_IO_URING_OP_SUPPORTED = 1 << 0,

    HZ_OFF_SQ_RING = 0,
    HZ_OFF_CQ_RING = 0x8000000,
    HZ_OFF_SQES = 0x10000000,
};

static inline int hz_uring_setup(unsigned entries, struct hz_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static inline int hz_uring_enter(int fd, unsigned to_submit, unsigned min_complete,
                                 unsigned flags, void *arg, size_t argsz) {
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
}

static inline int hz_uring_register(int fd, unsigned opcode, void *arg, unsigned nr_args) {
    return (int)syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
}

/* The ring words the kernel writes concurrently: acquire loads and release stores. */
static inline uint32_t hz_load_acquire(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void hz_store_release(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void hz_store_release16(uint16_t *p, uint16_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline uint32_t hz_load_relaxed(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#endif
