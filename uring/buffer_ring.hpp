// SPDX-License-Identifier: Apache-2.0
// A provided-buffer ring: `count` buffers of `size` bytes that the kernel picks from for
// multishot receives. liburing 2.3 has no io_uring_setup_buf_ring, so the ring is mapped here.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "uring/kernel_abi.hpp"
#include "uring/ring.hpp"

namespace aioring::uring {

class BufferRing {
public:
    // How the kernel uses a buffer: `whole`, one buffer per completion; `incremental`
    // (IOU_PBUF_RING_INC, Linux 6.12), each completion takes what it needs from the current
    // buffer and the next one continues after it, so a large buffer serves many small receives.
    enum class Consumption { whole, incremental };

    // `count` is rounded up to a power of two. On a kernel without buffer rings, ok() is false
    // and the caller receives into its own memory instead. An incremental ring that the kernel
    // refuses (before 6.12), or that AIORING_NO_INCREMENTAL=1 turns off, is not set up either:
    // ok() is false and nothing is mapped.
    //
    // `offered`: how many free buffers the kernel is offered at once (0: all of them). The
    // others wait on a stack and go in most recently freed first, so receives cycle through a
    // few buffers, still warm in the cache from their last use, instead of through all of
    // them, and the pages of buffers never needed are never touched.
    BufferRing(Ring& ring, std::uint16_t group, unsigned count, unsigned size,
               Consumption consumption = Consumption::whole, unsigned offered = 0);
    ~BufferRing();
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;

    bool ok() const { return registered_; }
    bool incremental() const { return incremental_; }
    std::uint16_t group() const { return group_; }
    unsigned buffer_size() const { return size_; }
    unsigned count() const { return count_; }

    // The buffer the kernel filled, as named by a CQE's IORING_CQE_BUFFER_SHIFT bits.
    static std::uint16_t buffer_id(unsigned cqe_flags) {
        return cqe_flags >> IORING_CQE_BUFFER_SHIFT;
    }
    char* data(std::uint16_t bid) { return base_ + static_cast<std::size_t>(bid) * size_; }

    // The `res` bytes a receive CQE with IORING_CQE_F_BUFFER names. `last`: the kernel is done
    // with the buffer, which goes back (give_back) once these bytes are consumed. With
    // incremental consumption a buffer comes back with IORING_CQE_F_BUF_MORE until the kernel
    // has filled it, and each CQE's bytes start where the previous one naming it ended (CQEs
    // are reaped in the order the kernel consumed the buffer, whichever socket they are for).
    struct Piece {
        char* data;
        std::uint16_t bid;
        bool last;
    };
    Piece take(unsigned cqe_flags, unsigned res) {
        const std::uint16_t bid = buffer_id(cqe_flags);
        char* p = data(bid);
        if (!incremental_) {
            if (offered_ != count_) [[unlikely]]
                left_ring();
            return {p, bid, true};
        }
        std::uint32_t& used = used_[bid];
        p += used;
        // A zero-length completion (EOF) commits nothing: the kernel keeps the buffer.
        if ((cqe_flags & abi::cqe_f_buf_more) || res == 0) {
            used += res;
            return {p, bid, false};
        }
        used = 0;
        if (offered_ != count_) left_ring();
        return {p, bid, true};
    }
    // Hands the buffer back to the kernel, whole.
    void give_back(std::uint16_t bid);

    // A receiver may keep a piece past its CQE (a paused reader holds it instead of copying):
    // the buffer then goes back once the kernel is done with it (finish) and every kept piece
    // of it is released, in either order. can_keep() bounds the buffers kept at once to half
    // the ring, so held pieces cannot starve the other receivers.
    bool can_keep(std::uint16_t bid) const { return kept_[bid] != 0 || kept_buffers_ < count_ / 2; }
    void keep(std::uint16_t bid) {
        if (kept_[bid]++ == 0) ++kept_buffers_;
    }
    void release(std::uint16_t bid) {
        assert(kept_[bid] != 0);
        if (--kept_[bid] != 0) return;
        --kept_buffers_;
        if (done_[bid]) {
            done_[bid] = false;
            give_back(bid);
        }
    }
    // Piece::last came for `bid`: back to the kernel now, or when its last kept piece goes.
    void finish(std::uint16_t bid) {
        if (kept_[bid] == 0)
            give_back(bid);
        else
            done_[bid] = true;
    }

    // Buffers kept by receivers right now (tests check that none leaks).
    unsigned kept_buffers() const { return kept_buffers_; }
    // Buffers the kernel was ever offered (tests: how many a stream cycles through).
    unsigned buffers_touched() const { return touched_; }
    unsigned offered() const { return offered_; }

    std::uint64_t exhaustions = 0;  // ENOBUFS seen by receivers (a sizing signal)

private:
    // The kernel took a buffer out of the ring for good: offer the most recently freed one.
    void left_ring() {
        --in_ring_;
        if (nspare_ != 0) add(spare_[--nspare_]);
    }
    void add(std::uint16_t bid);

    Ring& ring_;
    io_uring_buf_ring* br_ = nullptr;
    char* base_ = nullptr;
    std::size_t ring_bytes_ = 0;
    std::size_t data_bytes_ = 0;
    std::unique_ptr<std::uint32_t[]> used_;  // incremental: bytes of each buffer consumed so far
    std::unique_ptr<std::uint16_t[]> kept_;  // pieces of each buffer kept by receivers
    std::unique_ptr<bool[]> done_;           // the kernel finished it while pieces were kept
    unsigned kept_buffers_ = 0;
    std::unique_ptr<std::uint16_t[]> spare_;  // free buffers not offered, most recent on top
    unsigned nspare_ = 0;
    unsigned in_ring_ = 0;  // buffers offered to the kernel and not taken for good
    std::unique_ptr<bool[]> touched_ever_;
    unsigned touched_ = 0;
    std::uint16_t group_;
    unsigned count_;
    unsigned offered_;
    unsigned size_;
    bool registered_ = false;
    bool incremental_ = false;
};

// AIORING_NO_INCREMENTAL=1: stream receives use whole buffers even where the kernel offers
// incremental consumption (tests force the pre-6.12 path this way).
bool incremental_disabled_by_env();

}  // namespace aioring::uring
