// Maps and registers a provided-buffer ring (IORING_REGISTER_PBUF_RING) and fills it.
#include "uring/buffer_ring.hpp"

#include <sys/mman.h>

#include <new>
#include <system_error>

namespace aioring::uring {

static unsigned round_pow2(unsigned n) {
    unsigned p = 1;
    while (p < n) p <<= 1;
    return p;
}

BufferRing::BufferRing(Ring& ring, std::uint16_t group, unsigned count, unsigned size)
    : ring_(ring), group_(group), count_(round_pow2(count)), size_(size) {
    ring_bytes_ = count_ * sizeof(io_uring_buf);
    void* r = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED) throw std::bad_alloc();
    br_ = static_cast<io_uring_buf_ring*>(r);
    data_bytes_ = static_cast<std::size_t>(count_) * size_;
    void* d = mmap(nullptr, data_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (d == MAP_FAILED) {
        munmap(br_, ring_bytes_);
        throw std::bad_alloc();
    }
    base_ = static_cast<char*>(d);

    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
    reg.ring_entries = count_;
    reg.bgid = group_;
    registered_ = io_uring_register_buf_ring(ring_.raw(), &reg, 0) == 0;
    if (!registered_) return;
    const int mask = io_uring_buf_ring_mask(count_);
    for (unsigned i = 0; i < count_; ++i) io_uring_buf_ring_add(br_, data(i), size_, i, mask, i);
    io_uring_buf_ring_advance(br_, count_);
}

BufferRing::~BufferRing() {
    if (registered_) io_uring_unregister_buf_ring(ring_.raw(), group_);
    munmap(base_, data_bytes_);
    munmap(br_, ring_bytes_);
}

void BufferRing::give_back(std::uint16_t bid) {
    io_uring_buf_ring_add(br_, data(bid), size_, bid, io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(br_, 1);
}

}  // namespace aioring::uring
