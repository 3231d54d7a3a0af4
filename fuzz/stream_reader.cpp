// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: StreamReader's readline/readuntil/readexactly/read under random chunking
// and limits, through its public API (feed_data/feed_eof from loop callbacks, reads in a task),
// checked against a model of the byte stream: every byte a read returns is the next byte of
// what was fed, separators and limits as asyncio defines them.
//
// Input: [limit][sep length][sep bytes...][op count][op, arg]...[chunk seed][data...]
#include <aioring/aioring.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

using namespace aioring;

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "stream_reader fuzzer: %s\n", what);
    std::abort();
}
#define EXPECT(cond)                  \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

struct Input {
    const std::uint8_t* p;
    std::size_t n;
    std::uint8_t byte() {
        if (n == 0) return 0;
        --n;
        return *p++;
    }
};

struct Op {
    std::uint8_t kind, arg;
};

// What was fed so far and what the reads have consumed: data[pos, fed) is the reader's buffer.
struct Model {
    std::string data;
    std::size_t fed = 0, pos = 0;
    bool eof = false;
};

Task<void> consume(StreamReader reader, std::vector<Op> ops, std::string sep, std::size_t limit,
                   Model* m) {
    for (const Op& op : ops) {
        switch (op.kind % 4) {
            case 0: {  // readline
                try {
                    std::string line = co_await reader.readline();
                    EXPECT(m->data.compare(m->pos, line.size(), line) == 0);
                    const auto nl = m->data.find('\n', m->pos);
                    if (nl != std::string::npos && nl < m->fed) {
                        EXPECT(line.size() == nl + 1 - m->pos);
                        EXPECT(line.size() - 1 <= limit);
                    } else {
                        EXPECT(m->eof && line.size() == m->fed - m->pos);  // the rest at EOF
                    }
                    m->pos += line.size();
                } catch (const LimitOverrunError& e) {
                    // The over-long line is dropped: through its separator if it is here, else all
                    // that is buffered.
                    EXPECT(e.consumed > limit);
                    if (m->pos + e.consumed < m->fed && m->data[m->pos + e.consumed] == '\n')
                        m->pos += e.consumed + 1;
                    else
                        m->pos = m->fed;
                }
                break;
            }
            case 1: {  // readuntil
                try {
                    std::string chunk = co_await reader.readuntil(sep);
                    const auto at = m->data.find(sep, m->pos);
                    EXPECT(at != std::string::npos && at + sep.size() <= m->fed);
                    EXPECT(chunk.size() == at + sep.size() - m->pos);
                    EXPECT(m->data.compare(m->pos, chunk.size(), chunk) == 0);
                    EXPECT(at - m->pos <= limit);
                    m->pos += chunk.size();
                } catch (const LimitOverrunError& e) {
                    EXPECT(e.consumed > limit);  // and the data stays buffered
                } catch (const IncompleteReadError& e) {
                    EXPECT(m->eof);
                    EXPECT(e.partial.size() == m->fed - m->pos);
                    EXPECT(m->data.compare(m->pos, e.partial.size(), e.partial) == 0);
                    m->pos = m->fed;
                }
                break;
            }
            case 2: {  // readexactly
                const std::size_t n = op.arg % 48;
                try {
                    std::string got = co_await reader.readexactly(n);
                    EXPECT(got.size() == n);
                    EXPECT(m->data.compare(m->pos, n, got) == 0);
                    m->pos += n;
                } catch (const IncompleteReadError& e) {
                    EXPECT(m->eof && e.partial.size() < n);
                    EXPECT(e.partial.size() == m->fed - m->pos);
                    m->pos = m->fed;
                }
                break;
            }
            default: {  // read(n), read() to EOF
                const std::ptrdiff_t n =
                    op.arg == 255 ? -1 : static_cast<std::ptrdiff_t>(op.arg % 48);
                std::string got = co_await reader.read(n);
                if (n >= 0) EXPECT(got.size() <= static_cast<std::size_t>(n));
                if (n < 0) EXPECT(m->eof && got.size() == m->fed - m->pos);
                if (got.empty() && n != 0) EXPECT(m->eof && m->pos == m->fed);
                EXPECT(m->data.compare(m->pos, got.size(), got) == 0);
                m->pos += got.size();
                break;
            }
        }
        EXPECT(m->pos <= m->fed);
    }
}

// Feeds one chunk per loop turn (sizes 0..16 from a small generator), then EOF.
struct Feeder {
    EventLoop& loop;
    StreamReader reader;
    Model* m;
    std::uint32_t state;
    Future<> done;
    void step() {
        if (m->fed == m->data.size()) {
            m->eof = true;
            reader.feed_eof();
            done.set_result();
            return;
        }
        state = state * 1103515245u + 12345u;
        const std::size_t size = std::min<std::size_t>((state >> 16) % 17, m->data.size() - m->fed);
        const std::size_t at = m->fed;
        m->fed += size;  // first: the reader may run inside feed_data
        reader.feed_data(std::string_view(m->data).substr(at, size));
        loop.call_soon([this] { step(); });
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static EventLoop loop;
    Input in{data, size};
    const std::uint8_t l = in.byte();
    const std::size_t limit = l < 224 ? 1 + l % 32 : 64u * l;
    std::string sep;
    for (int i = 0, n = 1 + in.byte() % 3; i < n; ++i) sep.push_back(static_cast<char>(in.byte()));
    std::vector<Op> ops(1 + in.byte() % 24);
    for (auto& op : ops) op = {in.byte(), in.byte()};
    Model m;
    const std::uint32_t seed = in.byte();
    m.data.assign(reinterpret_cast<const char*>(in.p), in.n);

    StreamReader reader(limit);
    Feeder feeder{loop, reader, &m, seed, loop.create_future()};
    loop.call_soon([&feeder] { feeder.step(); });
    loop.run_until_complete(consume(reader, ops, sep, limit, &m));
    loop.run_until_complete(feeder.done);  // no callback of this input outlives it
    return 0;
}
