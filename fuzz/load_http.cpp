// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: aioring-load's HTTP/1.1 response parser (tools/load/parsers.hpp) fed a
// byte stream twice, whole and cut into pieces the input chooses. Either way it must never read
// past what it was given, always make progress, and find the same replies at the same offsets
// with the same status, body size and keep-alive, or fail at the same place.
#include "load_fuzz.hpp"
#include "parsers.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

using aioring::load::Feed;
using aioring::load::HttpParser;

namespace {

struct Event {
    std::size_t at;  // stream offset just after the reply (or the failure)
    bool bad;
    int status;
    bool keep_alive;
    std::uint64_t body;
    bool operator==(const Event&) const = default;
};

std::vector<Event> run(const std::string& stream, bool head, const std::vector<std::size_t>& cuts,
                       bool& ended_at_eof) {
    HttpParser p(head);
    std::vector<Event> out;
    std::size_t off = 0;
    const bool bad = load_fuzz::drive(stream, cuts, [&](std::string_view rest) {
        const Feed f = p.feed(rest);
        LOAD_FUZZ_EXPECT(f.used <= rest.size());
        LOAD_FUZZ_EXPECT(f.status == Feed::Status::bad || f.used > 0);
        off += f.used;
        if (f.status == Feed::Status::reply) {
            LOAD_FUZZ_EXPECT(p.status() >= 100 && p.status() <= 999);
            LOAD_FUZZ_EXPECT(p.body_bytes() <= off);
            out.push_back({off, false, p.status(), p.keep_alive(), p.body_bytes()});
        }
        if (f.status == Feed::Status::bad) {
            LOAD_FUZZ_EXPECT(!p.error().empty());
            out.push_back({0, true, 0, false, 0});  // where it notices may depend on the cuts
        }
        return f;
    });
    ended_at_eof = !bad && p.eof();
    if (ended_at_eof) out.push_back({off, false, p.status(), p.keep_alive(), p.body_bytes()});
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const bool head = data[0] & 1;
    std::vector<std::size_t> cuts;
    const std::string stream = load_fuzz::split_input(data + 1, size - 1, cuts);
    bool eof_whole = false, eof_cut = false;
    const auto whole = run(stream, head, {}, eof_whole);
    const auto cut = run(stream, head, cuts, eof_cut);
    LOAD_FUZZ_EXPECT(whole == cut);
    LOAD_FUZZ_EXPECT(eof_whole == eof_cut);
    return 0;
}
