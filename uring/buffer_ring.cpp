// SPDX-License-Identifier: Apache-2.0
// Maps and registers a provided-buffer ring (IORING_REGISTER_PBUF_RING) and fills it.
#include "uring/buffer_ring.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <system_error>

namespace aioring::uring {

static unsigned round_pow2(unsigned n) {
    unsigned p = 1;
    while (p < n) p <<= 1;
    return p;
}

bool incremental_disabled_by_env() {
    const char* v = std::getenv("AIORING_NO_INCREMENTAL");
    return v != nullptr && *v == '1';
}

BufferRing::BufferRing(Ring& ring, std::uint16_t group, unsigned count, unsigned size,
                       Consumption consumption, unsigned offered)
    : ring_(ring),
      group_(group),
      count_(round_pow2(count)),
      offered_(offered == 0 ? count_ : std::min(offered, count_)),
      size_(size) {
    const bool inc = consumption == Consumption::incremental;
    if (count == 0 || (inc && incremental_disabled_by_env())) return;
    ring_bytes_ = count_ * sizeof(io_uring_buf);
    void* r =
        mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED) throw std::bad_alloc();
    br_ = static_cast<io_uring_buf_ring*>(r);

    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
    reg.ring_entries = count_;
    reg.bgid = group_;
    // The probe is the registration: a kernel before 6.12 rejects the flag with EINVAL (before
    // 6.4 any non-zero `pad`), one before 5.19 rejects buffer rings altogether.
    if (inc) reg.pad = abi::pbuf_ring_inc;
    registered_ = ring_.register_buf_ring(reg);
    if (!registered_) {
        munmap(br_, ring_bytes_);
        br_ = nullptr;
        return;
    }
    incremental_ = inc;
    data_bytes_ = static_cast<std::size_t>(count_) * size_;
    // Pages are touched only when the kernel first fills them.
    void* d =
        mmap(nullptr, data_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (d == MAP_FAILED) {
        ring_.unregister_buf_ring(group_);
        munmap(br_, ring_bytes_);
        throw std::bad_alloc();
    }
    base_ = static_cast<char*>(d);
    if (incremental_) used_ = std::make_unique<std::uint32_t[]>(count_);
    kept_ = std::make_unique<std::uint16_t[]>(count_);
    done_ = std::make_unique<bool[]>(count_);
    touched_ever_ = std::make_unique<bool[]>(count_);
    if (offered_ != count_) {
        spare_ = std::make_unique<std::uint16_t[]>(count_);
        for (unsigned i = count_; i-- > offered_;)
            spare_[nspare_++] = static_cast<std::uint16_t>(i);
    }
    const int mask = io_uring_buf_ring_mask(count_);
    for (unsigned i = 0; i < offered_; ++i) {
        io_uring_buf_ring_add(br_, data(i), size_, static_cast<std::uint16_t>(i), mask,
                              static_cast<int>(i));
        touched_ever_[i] = true;
    }
    io_uring_buf_ring_advance(br_, static_cast<int>(offered_));
    in_ring_ = offered_;
    touched_ = offered_;
}

BufferRing::~BufferRing() {
    if (registered_) ring_.unregister_buf_ring(group_);
    if (base_ != nullptr) munmap(base_, data_bytes_);
    if (br_ != nullptr) munmap(br_, ring_bytes_);
}

void BufferRing::give_back(std::uint16_t bid) {
    if (offered_ != count_ && in_ring_ == offered_) {
        spare_[nspare_++] = bid;  // on top: the next one offered
        return;
    }
    add(bid);
}

void BufferRing::add(std::uint16_t bid) {
    if (offered_ != count_) {
        ++in_ring_;
        if (!touched_ever_[bid]) {
            touched_ever_[bid] = true;
            ++touched_;
        }
    }
    io_uring_buf_ring_add(br_, data(bid), size_, bid, io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(br_, 1);
}

}  // namespace aioring::uring
