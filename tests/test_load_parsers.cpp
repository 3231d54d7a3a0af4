// SPDX-License-Identifier: Apache-2.0
// aioring-load's request templates and reply framers, without a network: every stream of
// replies is cut at every place and in random pieces, and must frame the same each time.
#include <doctest/doctest.h>

#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "marker.hpp"
#include "parsers.hpp"

using namespace aioring::load;

namespace {

struct Framed {
    std::vector<std::size_t> ends;  // offsets just past each reply
    std::vector<bool> mismatched;
    std::vector<int> status;
    bool bad = false;
    std::string error;
};

// Feeds `stream` in pieces of the sizes `cut` gives, until it is used up or a framing error.
template <class Parser, class Cut>
Framed frame(Parser& p, const std::string& stream, Cut cut) {
    Framed f;
    std::size_t off = 0;
    while (off < stream.size()) {
        std::string_view piece(stream.data() + off, std::min(cut(), stream.size() - off));
        const std::size_t piece_start = off;
        while (!piece.empty()) {
            Feed r = p.feed(piece);
            REQUIRE(r.used <= piece.size());
            piece.remove_prefix(r.used);
            off += r.used;
            if (r.status == Feed::Status::bad) {
                f.bad = true;
                f.error = p.error();
                return f;
            }
            if (r.status == Feed::Status::reply) {
                f.ends.push_back(off);
                if constexpr (std::is_same_v<Parser, FramedParser>)
                    f.mismatched.push_back(p.mismatched());
                else
                    f.status.push_back(p.status());
            } else {
                REQUIRE(piece.empty());  // `more` means all of it was taken
            }
        }
        REQUIRE(off > piece_start);
    }
    return f;
}

// Frames `stream` whole, then cut after every byte offset (two pieces), then byte by byte, then
// in random pieces: each must give the same result as the whole.
template <class Make>
Framed frame_every_way(Make make, const std::string& stream) {
    auto whole_parser = make();
    Framed whole = frame(whole_parser, stream, [&] { return stream.size(); });
    for (std::size_t at = 1; at < stream.size(); ++at) {
        auto p = make();
        bool first = true;
        Framed two = frame(p, stream, [&] {
            std::size_t n = first ? at : stream.size();
            first = false;
            return n;
        });
        INFO("cut at " << at);
        CHECK(two.ends == whole.ends);
        CHECK(two.mismatched == whole.mismatched);
        CHECK(two.status == whole.status);
        CHECK(two.bad == whole.bad);
    }
    std::mt19937 rng(7);
    for (int round = 0; round < 50; ++round) {
        auto p = make();
        std::uniform_int_distribution<std::size_t> size(1, round < 10 ? 1 : 40);
        Framed pieces = frame(p, stream, [&] { return size(rng); });
        INFO("round " << round);
        CHECK(pieces.ends == whole.ends);
        CHECK(pieces.status == whole.status);
        CHECK(pieces.bad == whole.bad);
    }
    return whole;
}

std::string unescaped(std::string_view s) {
    std::string out, err;
    REQUIRE(unescape(s, out, err));
    return out;
}

}  // namespace

TEST_SUITE("load parsers") {
    TEST_CASE("C escapes become bytes; a bad escape is an error") {
        CHECK(unescaped("GET\\r\\n") == "GET\r\n");
        CHECK(unescaped("\\x41\\x4a\\x7\\\\\\t\\0z") == std::string("AJ\x07\\\t\0z", 7));
        std::string out, err;
        CHECK_FALSE(unescape("abc\\", out, err));
        CHECK_FALSE(unescape("\\q", out, err));
        CHECK(err.find("\\q") != std::string::npos);
        CHECK_FALSE(unescape("\\xg", out, err));
    }

    TEST_CASE("a template substitutes {seq}, {conn} and {rand:N}, and leaves other braces") {
        RequestTemplate t;
        std::string err;
        REQUIRE(t.parse("get k{conn}-{seq} {rand:5} {json}\\r\\n", true, err));
        CHECK_FALSE(t.is_constant());
        std::uint64_t rng = 42;
        std::string out;
        t.render(17, 3, rng, out);
        REQUIRE(out.size() ==
                std::string("get k3-17 ").size() + 5 + std::string(" {json}\r\n").size());
        CHECK(out.substr(0, 10) == "get k3-17 ");
        CHECK(out.substr(15) == " {json}\r\n");
        for (char c : out.substr(10, 5)) CHECK(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')));
        std::string again;
        t.render(17, 3, rng, again);
        CHECK(again.substr(10, 5) != out.substr(10, 5));  // the random state moved on
        RequestTemplate c;
        REQUIRE(c.parse("PING\\r\\n", true, err));
        CHECK(c.is_constant());
        CHECK(c.constant() == "PING\r\n");
        RequestTemplate raw;
        REQUIRE(raw.parse("a\\nb", false, err));  // from a file: bytes as they are
        CHECK(raw.constant() == "a\\nb");
        for (const char* bad : {"{rand:0}", "{rand:x}", "{rand:65537}", "{rand:4", "x\\"}) {
            RequestTemplate b;
            CHECK_FALSE_MESSAGE(b.parse(bad, true, err), bad);
        }
    }

    TEST_CASE("length prefix specs") {
        LengthPrefix p;
        std::string err;
        REQUIRE(parse_length_prefix("4", p, err));
        CHECK((p.width == 4 && !p.little_endian && p.offset == 0));
        REQUIRE(parse_length_prefix("2le+3", p, err));
        CHECK((p.width == 2 && p.little_endian && p.offset == 3));
        REQUIRE(parse_length_prefix("1be", p, err));
        CHECK((p.width == 1 && !p.little_endian));
        for (const char* bad : {"", "3", "4xe", "4+", "4le+x", "4le3", "8"})
            CHECK_FALSE_MESSAGE(parse_length_prefix(bad, p, err), bad);
    }

    TEST_CASE("fixed-size replies, checked against an expected prefix") {
        FrameSpec s;
        s.kind = FrameSpec::Kind::size;
        s.size = 5;
        s.expect_prefix = "OK";
        s.prepare();
        Framed f = frame_every_way([&] { return FramedParser(s); }, "OK123OKabcNO123OK999");
        CHECK(f.ends == std::vector<std::size_t>{5, 10, 15, 20});
        CHECK(f.mismatched == std::vector<bool>{false, false, true, false});
    }

    TEST_CASE("delimited replies, the delimiter split anywhere and overlapping itself") {
        FrameSpec s;
        s.kind = FrameSpec::Kind::delimiter;
        s.delimiter = "\r\n\r\n";
        s.prepare();
        // "\r\n\r\r\n\r\n": a false start inside; "+OK" lines with single CRLFs inside a reply.
        const std::string stream =
            "+OK\r\nx\r\n\r\n\r\n\r\n"
            "a\r\n\r\r\n\r\n"
            "\r\r\r\n\r\n";
        Framed f = frame_every_way([&] { return FramedParser(s); }, stream);
        CHECK(f.ends == std::vector<std::size_t>{10, 14, 22, 28});
        FrameSpec one;
        one.kind = FrameSpec::Kind::delimiter;
        one.delimiter = "\n";
        one.expect_prefix = "+";
        one.prepare();
        Framed g = frame_every_way([&] { return FramedParser(one); }, "+OK\n-ERR\n\n+\n");
        CHECK(g.ends == std::vector<std::size_t>{4, 9, 10, 12});
        CHECK(g.mismatched == std::vector<bool>{false, true, true, false});
    }

    TEST_CASE("a delimiter that never comes within max_reply is a framing error") {
        FrameSpec s;
        s.kind = FrameSpec::Kind::delimiter;
        s.delimiter = "\n";
        s.max_reply = 16;
        s.prepare();
        FramedParser p(s);
        Framed f = frame(p, std::string(40, 'x'), [] { return std::size_t{7}; });
        CHECK(f.bad);
        CHECK(f.error.find("no delimiter") != std::string::npos);
    }

    TEST_CASE("length-prefixed replies: widths, byte orders, an offset, a zero length") {
        FrameSpec s;
        s.kind = FrameSpec::Kind::length_prefix;
        s.prefix = LengthPrefix{2, false, 0};
        s.prepare();
        std::string be = std::string(
                             "\x00\x03"
                             "abc",
                             5) +
                         std::string("\x00\x00", 2) + std::string("\x01\x02", 2) +
                         std::string(258, 'z');
        Framed f = frame_every_way([&] { return FramedParser(s); }, be);
        CHECK(f.ends == std::vector<std::size_t>{5, 7, 7 + 2 + 258});

        FrameSpec le;
        le.kind = FrameSpec::Kind::length_prefix;
        le.prefix = LengthPrefix{4, true, 1};  // a type byte, then a little-endian length
        le.expect_prefix = "R";
        le.prepare();
        std::string stream = std::string(
                                 "R\x02\x00\x00\x00"
                                 "hi",
                                 7) +
                             std::string(
                                 "E\x01\x00\x00\x00"
                                 "!",
                                 6);
        Framed g = frame_every_way([&] { return FramedParser(le); }, stream);
        CHECK(g.ends == std::vector<std::size_t>{7, 13});
        CHECK(g.mismatched == std::vector<bool>{false, true});

        FrameSpec one;
        one.kind = FrameSpec::Kind::length_prefix;
        one.prefix = LengthPrefix{1, false, 0};
        one.prepare();
        Framed h = frame_every_way([&] { return FramedParser(one); }, std::string("\x01"
                                                                                  "a"
                                                                                  "\x00"
                                                                                  "\x02"
                                                                                  "bc",
                                                                                  6));
        CHECK(h.ends == std::vector<std::size_t>{2, 3, 6});
    }

    TEST_CASE("a length prefix over max_reply is a framing error") {
        FrameSpec s;
        s.kind = FrameSpec::Kind::length_prefix;
        s.prefix = LengthPrefix{4, false, 0};
        s.max_reply = 1000;
        s.prepare();
        FramedParser p(s);
        Framed f = frame(p, std::string("\x7f\xff\xff\xff", 4), [] { return std::size_t{1}; });
        CHECK(f.bad);
    }

    TEST_CASE("HTTP: Content-Length, chunked with extensions and trailers, no-body statuses") {
        const std::string stream =
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
            "HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\n"
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            "4;name=v\r\nwiki\r\n5\r\npedia\r\nD\r\n in\r\n\r\nchunks\r\n0\r\nX-Trailer: 1\r\n\r\n"
            "HTTP/1.1 100 Continue\r\n\r\n"
            "HTTP/1.1 204 No Content\r\n\r\n"
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
            "\r\nHTTP/1.1 503 Busy\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno";
        Framed f = frame_every_way([] { return HttpParser(); }, stream);
        CHECK_FALSE(f.bad);
        CHECK(f.status == std::vector<int>{200, 404, 200, 204, 304, 503});
        CHECK(f.ends.back() == stream.size());
        HttpParser p;
        Framed last = frame(p, stream, [] { return std::size_t{3}; });
        CHECK_FALSE(p.keep_alive());  // Connection: close on the last
    }

    TEST_CASE("HTTP: keep-alive by version and Connection header; a body to the end") {
        HttpParser p;
        frame(p, std::string("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"),
              [] { return std::size_t{100}; });
        CHECK_FALSE(p.keep_alive());
        HttpParser q;
        frame(
            q,
            std::string("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx"),
            [] { return std::size_t{100}; });
        CHECK(q.keep_alive());
        HttpParser r;
        Framed f = frame(r, std::string("HTTP/1.1 200 OK\r\n\r\nall of this"),
                         [] { return std::size_t{4}; });
        CHECK(f.ends.empty());
        CHECK(r.eof());
        CHECK(r.body_bytes() == 11);
        CHECK_FALSE(r.keep_alive());
        HttpParser head(true);
        Framed h = frame(head,
                         std::string("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                                     "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
                         [] { return std::size_t{5}; });
        CHECK(h.ends.size() == 2);
    }

    TEST_CASE("HTTP: malformed replies are framing errors, not crashes") {
        for (const char* bad :
             {"HTTP/2 200 OK\r\n\r\n", "SSH-2.0-OpenSSH\r\n", "HTTP/1.1 20 OK\r\n\r\n",
              "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
              "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
              "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"}) {
            HttpParser p;
            Framed f = frame(p, bad, [] { return std::size_t{3}; });
            CHECK_MESSAGE(f.bad, bad);
            CHECK(!f.error.empty());
        }
        HttpParser p;
        Framed f = frame(p, "HTTP/1.1 200 OK\r\nX: " + std::string(10000, 'a') + "\r\n\r\n",
                         [] { return std::size_t{512}; });
        CHECK(f.bad);
    }
}

TEST_SUITE("load marker") {
    TEST_CASE(
        "markers are found in a free-form stream cut anywhere, noise and false starts skipped") {
        std::string stream = "noise [ [[ [[a [[al:12 [[[";
        std::vector<std::pair<std::uint64_t, std::uint64_t>> want;
        for (std::uint64_t k = 0; k < 5; ++k) {
            const std::uint64_t seq = k * 0x123456789ull, conn = 7 + k;
            append_marker(seq, conn, stream);
            want.emplace_back(seq, conn);
            stream += k % 2 ? "payload[[al:zz]]" : "[";
        }
        std::string broken;
        append_marker(1, 2, broken);
        broken[10] = 'g';  // not hex: not a marker
        stream += broken + "tail";
        auto scan = [&](auto cut) {
            MarkerScanner m;
            std::vector<std::pair<std::uint64_t, std::uint64_t>> got;
            std::size_t off = 0;
            while (off < stream.size()) {
                std::string_view piece(stream.data() + off, std::min(cut(), stream.size() - off));
                while (!piece.empty()) {
                    Feed f = m.feed(piece);
                    REQUIRE(f.status != Feed::Status::bad);
                    piece.remove_prefix(f.used);
                    off += f.used;
                    if (f.status == Feed::Status::reply) got.emplace_back(m.seq(), m.conn());
                }
            }
            return got;
        };
        CHECK(scan([&] { return stream.size(); }) == want);
        for (std::size_t n = 1; n < 40; ++n) CHECK(scan([n] { return n; }) == want);
        std::mt19937 rng(3);
        std::uniform_int_distribution<std::size_t> size(1, 50);
        for (int round = 0; round < 50; ++round) CHECK(scan([&] { return size(rng); }) == want);
    }

    TEST_CASE("a marker is 32 bytes of text naming the request and the connection") {
        std::string m;
        append_marker(0xabcdef, 42, m);
        CHECK(m == "[[al:0000000000abcdef:0000002a]]");
        CHECK(m.size() == marker_size);
    }
}

TEST_SUITE("load parsers") {
    TEST_CASE("random bytes in random pieces: every parser makes progress and never reads past") {
        // An alphabet that reaches deep into each parser's states.
        const std::string words[] = {"HTTP/1.1 ",
                                     "HTTP/1.0 ",
                                     "200 OK",
                                     "204",
                                     "100",
                                     "\r\n",
                                     "\n",
                                     ":",
                                     "Content-Length: ",
                                     "Transfer-Encoding: chunked",
                                     "Connection: close",
                                     "0",
                                     "5",
                                     "ff",
                                     ";x",
                                     "abc",
                                     "[[al:",
                                     "0123456789abcdef",
                                     "]]",
                                     "\x00\x01",
                                     "\xff",
                                     " ",
                                     "\r\n\r\n"};
        std::mt19937 rng(11);
        std::uniform_int_distribution<std::size_t> pick(0, std::size(words) - 1), cut(1, 30),
            len(1, 60);
        FrameSpec size, delim, prefix;
        size.kind = FrameSpec::Kind::size;
        size.size = 7;
        size.expect_prefix = "HT";
        delim.kind = FrameSpec::Kind::delimiter;
        delim.delimiter = "\r\n\r\n";
        prefix.kind = FrameSpec::Kind::length_prefix;
        prefix.prefix = LengthPrefix{2, true, 1};
        prefix.max_reply = 4096;
        for (FrameSpec* s : {&size, &delim, &prefix}) s->prepare();
        for (int round = 0; round < 3000; ++round) {
            std::string stream;
            for (std::size_t n = len(rng); n; --n) stream += words[pick(rng)];
            HttpParser http(round % 7 == 0);
            FramedParser a(size), b(delim), c(prefix);
            MarkerScanner m;
            bool http_bad = false, c_bad = false, b_bad = false;
            for (std::size_t off = 0; off < stream.size();) {
                const std::string_view piece(stream.data() + off,
                                             std::min(cut(rng), stream.size() - off));
                auto drive = [&](auto& p, bool& bad) {
                    std::string_view rest = piece;
                    while (!rest.empty() && !bad) {
                        const Feed f = p.feed(rest);
                        REQUIRE(f.used <= rest.size());
                        if (f.status == Feed::Status::bad)
                            bad = true;
                        else
                            REQUIRE((f.used > 0 || rest.empty()));
                        rest.remove_prefix(f.used);
                    }
                };
                bool never = false;
                drive(http, http_bad);
                drive(a, never);
                drive(b, b_bad);
                drive(c, c_bad);
                drive(m, never);
                CHECK_FALSE(never);
                off += piece.size();
            }
            http.eof();
        }
    }
}
