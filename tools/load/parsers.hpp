// SPDX-License-Identifier: Apache-2.0
// aioring-load's request templates and reply framers: pure and incremental. A framer is fed the
// bytes of a connection in whatever pieces they arrive and says where each reply ends; nothing
// here knows a loop or a socket, so each piece can be tested (and fuzzed) on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace aioring::load {

// C-style escapes to bytes: \n \r \t \0 \a \b \f \v \e \\ \" \' \? and \xHH (one or two hex
// digits). False, with `error` set, on an unknown or unfinished escape.
bool unescape(std::string_view in, std::string& out, std::string& error);

// A request with per-request substitutions: {seq} (the request's number on its connection,
// from 0), {conn} (the connection's number, from 0), {rand:N} (N random characters from
// [a-z0-9], N from 1 to 65536). Any other brace is a literal.
class RequestTemplate {
public:
    // `escapes`: literal parts are C-escaped text (unescaped here). False with `error` set on a
    // bad escape or a bad {rand:N}.
    bool parse(std::string_view text, bool escapes, std::string& error);
    bool is_constant() const {
        return parts_.size() <= 1 && (parts_.empty() || parts_[0].kind == Kind::literal);
    }
    // The whole request when it has no substitutions.
    std::string_view constant() const {
        return parts_.empty() ? std::string_view() : parts_[0].text;
    }
    // Appends request `seq` of connection `conn` to `out`; `rng` is the connection's random state.
    void render(std::uint64_t seq, std::uint64_t conn, std::uint64_t& rng, std::string& out) const;

private:
    enum class Kind { literal, seq, conn, rand };
    struct Part {
        Kind kind;
        std::string text;   // literal
        std::size_t n = 0;  // rand
    };
    std::vector<Part> parts_;
};

// "1|2|4[le|be][+OFFSET]": the length field is WIDTH bytes (big-endian unless `le`) that start
// OFFSET bytes into the reply and count the bytes after the field; the reply is
// OFFSET + WIDTH + value bytes.
struct LengthPrefix {
    unsigned width = 4;
    bool little_endian = false;
    std::size_t offset = 0;
};
bool parse_length_prefix(std::string_view spec, LengthPrefix& out, std::string& error);

// How a framed reply ends, and what it must start with.
struct FrameSpec {
    enum class Kind { size, delimiter, length_prefix } kind = Kind::size;
    std::size_t size = 0;               // Kind::size
    std::string delimiter;              // Kind::delimiter: the reply ends with (and includes) it
    LengthPrefix prefix;                // Kind::length_prefix
    std::string expect_prefix;          // a reply not starting with it is a mismatch
    std::size_t max_reply = 64u << 20;  // a longer one is a framing error
    // The delimiter's failure table (Knuth-Morris-Pratt), made by prepare().
    std::vector<std::size_t> kmp;
    void prepare();
};

// What one feed() did: `used` bytes of the input consumed; `reply` when a reply ended at the
// last of them (feed again with the rest for the next one); `bad` when the bytes cannot be a
// reply (the connection is unusable: its framing is lost).
struct Feed {
    enum class Status { more, reply, bad };
    std::size_t used = 0;
    Status status = Status::more;
};

class FramedParser {
public:
    explicit FramedParser(const FrameSpec& spec) : spec_(&spec) {}
    Feed feed(std::string_view data);
    // The reply just ended did not start with the expected prefix.
    bool mismatched() const { return mismatched_; }
    const std::string& error() const { return error_; }
    // Between replies (nothing of the next one seen yet).
    bool idle() const { return seen_ == 0; }

private:
    Feed finish(std::size_t used);
    Feed fail(std::size_t used, std::string why);

    const FrameSpec* spec_;
    std::size_t seen_ = 0;     // bytes of the current reply so far
    std::size_t total_ = 0;    // length_prefix: the reply's length once the field is read
    std::uint64_t field_ = 0;  // length_prefix: the field's value as read so far
    std::size_t matched_ = 0;  // delimiter: bytes of it matched at the end of what was seen
    bool prefix_bad_ = false;
    bool mismatched_ = false;
    std::string error_;
};

// HTTP/1.1 responses on a keep-alive connection: status line, headers, then a body framed by
// Content-Length or chunked transfer coding (or none: 1xx, 204, 304, a reply to HEAD; or, with
// neither header, the body runs to the connection's end: call eof()). Interim 1xx responses
// are skipped. Header lines over 8 KiB or a head over 64 KiB are framing errors.
class HttpParser {
public:
    // `head_request`: the requests are HEAD, so replies carry no body.
    explicit HttpParser(bool head_request = false) : head_(head_request) {}
    Feed feed(std::string_view data);
    // The connection ended: true when that ends a reply whose body ran to the end.
    bool eof();
    // Of the reply just ended.
    int status() const { return status_; }
    // The server keeps the connection open after this reply (HTTP/1.1 without
    // "Connection: close", or HTTP/1.0 with "Connection: keep-alive").
    bool keep_alive() const { return keep_alive_; }
    std::uint64_t body_bytes() const { return body_seen_; }
    const std::string& error() const { return error_; }
    bool idle() const { return state_ == State::status_line && line_.empty(); }

private:
    enum class State {
        status_line,
        headers,
        body,
        chunk_size,
        chunk_data,
        chunk_end,
        trailers,
        to_eof
    };
    Feed fail(std::size_t used, std::string why);
    // Takes bytes up to and including '\n' into line_; true once a whole line is there.
    bool take_line(std::string_view data, std::size_t& used, bool& too_long);
    bool on_status_line(std::string_view line);
    bool on_header(std::string_view line);
    // After the empty line that ends the head: where the body starts (or the reply ends).
    bool end_of_head();

    bool head_;
    State state_ = State::status_line;
    std::string line_;
    std::size_t head_bytes_ = 0;
    int status_ = 0;
    int minor_ = 1;
    bool keep_alive_ = true;
    bool connection_close_ = false, connection_keep_alive_ = false;
    bool chunked_ = false;
    bool has_length_ = false;
    std::uint64_t length_ = 0;  // Content-Length, or the current chunk's size
    std::uint64_t left_ = 0;    // of the body or chunk
    std::uint64_t body_seen_ = 0;
    std::string error_;
};

}  // namespace aioring::load
