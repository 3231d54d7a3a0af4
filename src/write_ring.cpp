// SPDX-License-Identifier: Apache-2.0
#include "src/write_ring.hpp"

#include <bit>
#include <cstring>

namespace aioring::detail {

void WriteRing::copy(char* to, const char* from, std::size_t n) {
    if (n != 0) std::memcpy(to, from, n);
}

void WriteRing::grow(std::size_t need, bool send_inflight) {
    const std::size_t cap = std::bit_ceil(std::max(need, min_capacity));
    auto b = std::make_unique_for_overwrite<char[]>(cap);
    // The queued bytes, in order, at the start of the new buffer.
    iovec spans[2];
    std::size_t at = 0;
    for (std::size_t i = 0, n = front(spans, size_); i < n; ++i) {
        copy(b.get() + at, static_cast<const char*>(spans[i].iov_base), spans[i].iov_len);
        at += spans[i].iov_len;
    }
    // The in-flight send points into the buffer it was given: the first one replaced while it
    // flies. Any later one it never saw.
    if (send_inflight && !retired_) retired_ = std::move(buf_);
    buf_ = std::move(b);
    cap_ = cap;
    head_ = 0;
}

void WriteRing::release() {
    buf_.reset();
    cap_ = 0;
    head_ = 0;
}

}  // namespace aioring::detail
