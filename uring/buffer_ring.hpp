// A provided-buffer ring: `count` buffers of `size` bytes that the kernel picks from for
// multishot receives. liburing 2.3 has no io_uring_setup_buf_ring, so the ring is mapped here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "uring/ring.hpp"

namespace aioring::uring {

class BufferRing {
public:
    // `count` is rounded up to a power of two. On a kernel without buffer rings, ok() is false
    // and the caller receives into its own memory instead.
    BufferRing(Ring& ring, std::uint16_t group, unsigned count, unsigned size);
    ~BufferRing();
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;

    bool ok() const { return registered_; }
    std::uint16_t group() const { return group_; }
    unsigned buffer_size() const { return size_; }
    unsigned count() const { return count_; }

    // The buffer the kernel filled, as named by a CQE's IORING_CQE_BUFFER_SHIFT bits.
    static std::uint16_t buffer_id(unsigned cqe_flags) { return cqe_flags >> IORING_CQE_BUFFER_SHIFT; }
    char* data(std::uint16_t bid) { return base_ + static_cast<std::size_t>(bid) * size_; }
    // Hands the buffer back to the kernel.
    void give_back(std::uint16_t bid);

    std::uint64_t exhaustions = 0;  // ENOBUFS seen by receivers (a sizing signal)

private:
    Ring& ring_;
    io_uring_buf_ring* br_ = nullptr;
    char* base_ = nullptr;
    std::size_t ring_bytes_ = 0;
    std::size_t data_bytes_ = 0;
    std::uint16_t group_;
    unsigned count_;
    unsigned size_;
    bool registered_ = false;
};

}  // namespace aioring::uring
