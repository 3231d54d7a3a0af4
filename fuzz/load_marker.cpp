// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: aioring-load's marker scanner (tools/load/marker.hpp) on a byte stream cut
// into pieces the input chooses. It must find exactly the markers a plain search of the whole
// stream finds, in order, with their numbers, however the stream is cut.
#include "load_fuzz.hpp"
#include "marker.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace aioring::load;

namespace {

using Found = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// The reference: every "[[al:" + 16 hex + ":" + 8 hex + "]]", scanning on after each one.
Found reference(const std::string& s) {
    Found out;
    for (std::size_t i = 0; i + marker_size <= s.size();) {
        bool ok = s.compare(i, 5, "[[al:") == 0 && s[i + 21] == ':' && s[i + 30] == ']' &&
                  s[i + 31] == ']';
        std::uint64_t seq = 0, conn = 0;
        for (std::size_t k = 5; ok && k < 21; ++k)
            ok = hex(s[i + k]) >= 0,
            seq = seq << 4 | static_cast<std::uint64_t>(hex(s[i + k]) & 0xf);
        for (std::size_t k = 22; ok && k < 30; ++k)
            ok = hex(s[i + k]) >= 0,
            conn = conn << 4 | static_cast<std::uint64_t>(hex(s[i + k]) & 0xf);
        if (ok) {
            out.emplace_back(seq, conn);
            i += marker_size;
        } else {
            ++i;
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::size_t> cuts;
    const std::string stream = load_fuzz::split_input(data, size, cuts);
    MarkerScanner m;
    Found found;
    const bool bad = load_fuzz::drive(stream, cuts, [&](std::string_view rest) {
        const Feed f = m.feed(rest);
        LOAD_FUZZ_EXPECT(f.used <= rest.size());
        LOAD_FUZZ_EXPECT(f.used > 0);
        LOAD_FUZZ_EXPECT(f.status != Feed::Status::bad);
        if (f.status == Feed::Status::reply) found.emplace_back(m.seq(), m.conn());
        return f;
    });
    LOAD_FUZZ_EXPECT(!bad);
    LOAD_FUZZ_EXPECT(found == reference(stream));
    return 0;
}
