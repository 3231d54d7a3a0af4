// SPDX-License-Identifier: Apache-2.0
// A stream transport's write buffer: the bytes written and not yet sent, oldest first, in one
// circular buffer. Sending takes them from the front as one or two spans (two when they wrap).
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string_view>

namespace aioring::detail {

// The buffer grows (to the next power of two that holds what is queued, from min_capacity) and
// is then reused as it is: how much it allocates depends only on the most bytes ever queued at
// once, not on how the sends happened to split them, so steady streaming allocates nothing.
// Emptied, it starts again at its beginning (one span per send). A buffer larger than
// keep_capacity is freed once it is empty, so a connection that once had a large backlog does
// not keep it.
class WriteRing {
public:
    static constexpr std::size_t min_capacity = 16 * 1024;
    static constexpr std::size_t keep_capacity = 512 * 1024;

    bool empty() const { return size_ == 0; }
    std::size_t size() const { return size_; }
    std::size_t capacity() const { return cap_; }

    // Appends `data`. `send_inflight`: a send may point into the buffer now, so growing keeps
    // the old one until settle().
    void append(std::string_view data, bool send_inflight) {
        if (data.size() > cap_ - size_) [[unlikely]]
            grow(size_ + data.size(), send_inflight);
        std::size_t tail = head_ + size_;
        if (tail >= cap_) tail -= cap_;
        const std::size_t first = std::min(data.size(), cap_ - tail);
        copy(buf_.get() + tail, data.data(), first);
        copy(buf_.get(), data.data() + first, data.size() - first);
        size_ += data.size();
    }

    // The first `limit` queued bytes (all of them at most) as up to two spans into `out`;
    // returns how many.
    std::size_t front(iovec* out, std::size_t limit) const {
        const std::size_t n = std::min(size_, limit);
        if (n == 0) return 0;
        const std::size_t first = std::min(n, cap_ - head_);
        out[0] = iovec{buf_.get() + head_, first};
        if (first == n) return 1;
        out[1] = iovec{buf_.get(), n - first};
        return 2;
    }

    // `n` bytes from the front were sent.
    void consume(std::size_t n) {
        size_ -= n;
        head_ = size_ == 0 ? 0 : (head_ + n) % cap_;
    }

    // The send that was in flight completed: what it pointed into may go, and an emptied
    // buffer over keep_capacity too.
    void settle() {
        retired_.reset();
        if (size_ == 0 && cap_ > keep_capacity) release();
    }

    // Drops every byte (abort): no send may point into the buffer any more.
    void clear() {
        size_ = 0;
        head_ = 0;
        settle();
    }

private:
    static void copy(char* to, const char* from, std::size_t n);
    void grow(std::size_t need, bool send_inflight);
    void release();

    std::unique_ptr<char[]> buf_;
    std::size_t cap_ = 0;
    std::size_t head_ = 0;  // where the oldest byte is
    std::size_t size_ = 0;
    std::unique_ptr<char[]> retired_;  // the buffer the in-flight send points into, after a grow
};

}  // namespace aioring::detail
