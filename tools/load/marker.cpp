// SPDX-License-Identifier: Apache-2.0
// Latency markers: written as fixed-width text, found by a byte-at-a-time matcher that needs no
// buffer, so a marker split across any number of reads is found all the same.
#include "marker.hpp"

#include <cstring>

namespace aioring::load {

namespace {

constexpr char hex[] = "0123456789abcdef";

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

void append_marker(std::uint64_t seq, std::uint64_t conn, std::string& out) {
    char m[marker_size];
    std::memcpy(m, "[[al:", 5);
    for (int i = 0; i < 16; ++i) m[5 + i] = hex[(seq >> (60 - 4 * i)) & 0xf];
    m[21] = ':';
    for (int i = 0; i < 8; ++i) m[22 + i] = hex[(conn >> (28 - 4 * i)) & 0xf];
    m[30] = ']';
    m[31] = ']';
    out.append(m, marker_size);
}

Feed MarkerScanner::feed(std::string_view data) {
    std::size_t i = 0;
    while (i < data.size()) {
        if (state_ == 0) {
            const void* hit = std::memchr(data.data() + i, '[', data.size() - i);
            if (!hit) return Feed{data.size(), Feed::Status::more};
            i = static_cast<std::size_t>(static_cast<const char*>(hit) - data.data());
        }
        const char c = data[i++];
        const std::size_t at = state_;
        bool ok;
        if (at < 5) {
            ok = c == "[[al:"[at];
        } else if (at < 21 || (at >= 22 && at < 30)) {
            const int v = hex_value(c);
            ok = v >= 0;
            if (ok) {
                std::uint64_t& acc = at < 21 ? seq_acc_ : conn_acc_;
                acc = (at == 5 || at == 22 ? 0 : acc << 4) | static_cast<std::uint64_t>(v);
            }
        } else if (at == 21) {
            ok = c == ':';
        } else {
            ok = c == ']';
        }
        if (ok) {
            if (++state_ == marker_size) {
                state_ = 0;
                seq_ = seq_acc_;
                conn_ = conn_acc_;
                return Feed{i, Feed::Status::reply};
            }
            continue;
        }
        // A mismatch: the only way a marker can restart inside what was matched is at '[':
        // "[[[" is still "[[" so far, any other '[' starts one.
        state_ = c == '[' ? (at == 2 ? 2 : 1) : 0;
    }
    return Feed{i, Feed::Status::more};
}

}  // namespace aioring::load
