// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: aioring-load's framed-reply parser (tools/load/parsers.hpp) by size,
// delimiter and length prefix, with a spec parsed from the input (parse_length_prefix, unescape,
// RequestTemplate on the same text). The stream is fed whole and in pieces the input chooses:
// the same replies must end at the same offsets, and each must be what its spec says (its size,
// ending in the delimiter once, or OFFSET + WIDTH + the field's value bytes).
#include "load_fuzz.hpp"
#include "parsers.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace aioring::load;

namespace {

std::vector<std::pair<std::size_t, bool>> run(const std::string& stream, const FrameSpec& spec,
                                              const std::vector<std::size_t>& cuts, bool& bad) {
    FramedParser p(spec);
    std::vector<std::pair<std::size_t, bool>> ends;  // offset after each reply, mismatched
    std::size_t off = 0, start = 0;
    bad = load_fuzz::drive(stream, cuts, [&](std::string_view rest) {
        const Feed f = p.feed(rest);
        LOAD_FUZZ_EXPECT(f.used <= rest.size());
        LOAD_FUZZ_EXPECT(f.status == Feed::Status::bad || f.used > 0);
        off += f.used;
        if (f.status == Feed::Status::reply) {
            const std::string_view reply(stream.data() + start, off - start);
            LOAD_FUZZ_EXPECT(!reply.empty() || spec.kind == FrameSpec::Kind::size);
            LOAD_FUZZ_EXPECT(reply.size() <= spec.max_reply);
            switch (spec.kind) {
                case FrameSpec::Kind::size:
                    LOAD_FUZZ_EXPECT(reply.size() == spec.size);
                    break;
                case FrameSpec::Kind::delimiter:
                    LOAD_FUZZ_EXPECT(reply.size() >= spec.delimiter.size());
                    LOAD_FUZZ_EXPECT(reply.substr(reply.size() - spec.delimiter.size()) ==
                                     spec.delimiter);
                    LOAD_FUZZ_EXPECT(reply.find(spec.delimiter) ==
                                     reply.size() - spec.delimiter.size());
                    break;
                case FrameSpec::Kind::length_prefix: {
                    const LengthPrefix& lp = spec.prefix;
                    LOAD_FUZZ_EXPECT(reply.size() >= lp.offset + lp.width);
                    std::uint64_t v = 0;
                    for (unsigned i = 0; i < lp.width; ++i) {
                        const auto b = static_cast<unsigned char>(
                            reply[lp.offset + (lp.little_endian ? lp.width - 1 - i : i)]);
                        v = v << 8 | b;
                    }
                    LOAD_FUZZ_EXPECT(reply.size() == lp.offset + lp.width + v);
                    break;
                }
            }
            const bool starts = reply.substr(0, spec.expect_prefix.size()) == spec.expect_prefix;
            LOAD_FUZZ_EXPECT(p.mismatched() == !starts);
            ends.emplace_back(off, p.mismatched());
            start = off;
            LOAD_FUZZ_EXPECT(p.idle());
        }
        if (f.status == Feed::Status::bad) LOAD_FUZZ_EXPECT(!p.error().empty());
        return f;
    });
    return ends;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Header: kind, a size byte, max_reply byte, then a NUL-terminated spec text and a
    // NUL-terminated expected prefix; the rest is the stream (and its cuts).
    if (size < 4) return 0;
    FrameSpec spec;
    const unsigned kind = data[0] % 3;
    spec.size = data[1];
    spec.max_reply = data[2] < 128 ? std::size_t{64} << 20 : std::size_t{data[2]} * 4;
    std::size_t i = 3;
    auto take = [&] {
        std::string s;
        while (i < size && data[i] != 0) s.push_back(static_cast<char>(data[i++]));
        if (i < size) ++i;
        return s;
    };
    const std::string text = take();
    const std::string prefix = take();
    std::string error;
    // The option parsers on the same text: an error has a message, a success holds up.
    std::string unescaped;
    if (unescape(text, unescaped, error))
        LOAD_FUZZ_EXPECT(unescaped.size() <= text.size());
    else
        LOAD_FUZZ_EXPECT(!error.empty());
    RequestTemplate tmpl;
    error.clear();
    if (tmpl.parse(text, true, error)) {
        std::uint64_t rng = 1;
        std::string out;
        if (text.size() < 64) tmpl.render(3, 7, rng, out);  // {rand:N} may ask for 64 KiB
    } else {
        LOAD_FUZZ_EXPECT(!error.empty());
    }
    error.clear();
    switch (kind) {
        case 0:
            spec.kind = FrameSpec::Kind::size;
            break;
        case 1:
            spec.kind = FrameSpec::Kind::delimiter;
            if (!unescape(text, spec.delimiter, error) || spec.delimiter.empty()) return 0;
            break;
        default:
            spec.kind = FrameSpec::Kind::length_prefix;
            if (!parse_length_prefix(text, spec.prefix, error)) {
                LOAD_FUZZ_EXPECT(!error.empty());
                return 0;
            }
            LOAD_FUZZ_EXPECT(spec.prefix.width == 1 || spec.prefix.width == 2 ||
                             spec.prefix.width == 4);
            break;
    }
    if (spec.kind == FrameSpec::Kind::size && spec.size == 0) spec.size = 1;
    spec.expect_prefix = prefix;
    spec.prepare();
    std::vector<std::size_t> cuts;
    const std::string stream = load_fuzz::split_input(data + i, size - i, cuts);
    bool bad_whole = false, bad_cut = false;
    const auto whole = run(stream, spec, {}, bad_whole);
    const auto cut = run(stream, spec, cuts, bad_cut);
    LOAD_FUZZ_EXPECT(whole == cut);
    LOAD_FUZZ_EXPECT(bad_whole == bad_cut);
    return 0;
}
