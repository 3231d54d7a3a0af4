// SPDX-License-Identifier: Apache-2.0
// Kernel ABI newer than liburing 2.3's headers: the one place where such constants are
// defined. Values are the kernel's (include/uapi/linux/io_uring.h); where a newer liburing
// defines them, the static_asserts check that they agree.
#pragma once

#include <liburing.h>

namespace aioring::uring::abi {

// io_uring_buf_reg.flags (liburing 2.3 calls the field `pad`): the kernel consumes a provided
// buffer incrementally, so one large buffer serves many receives (6.12).
inline constexpr unsigned short pbuf_ring_inc = 2;  // IOU_PBUF_RING_INC

// CQE flag (6.12): the buffer named by this CQE is only partly used; the kernel keeps filling
// it, so it must not be given back yet. The next CQE naming it continues where this one ended.
inline constexpr unsigned cqe_f_buf_more = 1U << 4;  // IORING_CQE_F_BUF_MORE

#ifdef IORING_CQE_F_BUF_MORE
static_assert(IORING_CQE_F_BUF_MORE == cqe_f_buf_more);
#endif
#ifdef IOU_PBUF_RING_INC
static_assert(IOU_PBUF_RING_INC == pbuf_ring_inc);
#endif

}  // namespace aioring::uring::abi
