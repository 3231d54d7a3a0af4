// SPDX-License-Identifier: Apache-2.0
// Shared by the load-tool parser fuzzers: an input split into a byte stream and the sizes of the
// pieces it arrives in, and a driver that feeds a parser piece by piece until it stops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "parsers.hpp"

#define LOAD_FUZZ_EXPECT(cond)                                                \
    do {                                                                      \
        if (!(cond)) {                                                        \
            std::fprintf(stderr, "load parser fuzzer: %s violated\n", #cond); \
            std::abort();                                                     \
        }                                                                     \
    } while (0)

namespace load_fuzz {

// The input's last bytes, up to 16 of them, after a 0xff separator are the piece sizes (each
// 1 to 255, cycled); without a separator the stream arrives one byte at a time.
inline std::string split_input(const std::uint8_t* data, std::size_t size,
                               std::vector<std::size_t>& cuts) {
    std::size_t end = size;
    for (std::size_t i = size; i > 0 && size - i < 17; --i) {
        if (data[i - 1] == 0xff) {
            end = i - 1;
            break;
        }
    }
    for (std::size_t i = end + 1; i < size; ++i) cuts.push_back(data[i] ? data[i] : 1);
    if (end == size) cuts.push_back(1);
    return std::string(reinterpret_cast<const char*>(data), end);
}

// Feeds `stream` in pieces of `cuts` (empty: all at once) to `feed`, which returns a Feed and
// checks it; stops at the first bad one. True if one was bad.
template <class F>
bool drive(const std::string& stream, const std::vector<std::size_t>& cuts, F&& feed) {
    std::size_t off = 0, k = 0;
    while (off < stream.size()) {
        const std::size_t n = cuts.empty() ? stream.size() - off
                                           : std::min(cuts[k++ % cuts.size()], stream.size() - off);
        std::string_view piece(stream.data() + off, n);
        while (!piece.empty()) {
            const aioring::load::Feed f = feed(piece);
            if (f.status == aioring::load::Feed::Status::bad) return true;
            piece.remove_prefix(f.used);
        }
        off += n;
    }
    return false;
}

}  // namespace load_fuzz
