// SPDX-License-Identifier: Apache-2.0
// Request templates and the framed and HTTP/1.1 reply parsers: byte-at-a-time correct, with
// the common cases (a whole reply in one piece) taken in bulk.
#include "parsers.hpp"

#include <algorithm>
#include <cstring>

namespace aioring::load {

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

bool unescape(std::string_view in, std::string& out, std::string& error) {
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c != '\\') {
            out += c;
            continue;
        }
        if (++i == in.size()) {
            error = "a backslash at the end (write \\\\ for one)";
            return false;
        }
        switch (in[i]) {
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case '0':
                out += '\0';
                break;
            case 'a':
                out += '\a';
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'v':
                out += '\v';
                break;
            case 'e':
                out += '\x1b';
                break;
            case '\\':
                out += '\\';
                break;
            case '"':
                out += '"';
                break;
            case '\'':
                out += '\'';
                break;
            case '?':
                out += '?';
                break;
            case 'x': {
                int v = -1;
                if (i + 1 < in.size()) v = hex_digit(in[i + 1]);
                if (v < 0) {
                    error = "\\x needs a hex digit";
                    return false;
                }
                ++i;
                if (i + 1 < in.size() && hex_digit(in[i + 1]) >= 0) v = v * 16 + hex_digit(in[++i]);
                out += static_cast<char>(v);
                break;
            }
            default:
                error = std::string("unknown escape \\") + in[i];
                return false;
        }
    }
    return true;
}

bool RequestTemplate::parse(std::string_view text, bool escapes, std::string& error) {
    parts_.clear();
    std::string literal;  // raw text of the literal part being collected
    auto flush = [&]() {
        if (literal.empty()) return true;
        std::string bytes;
        if (escapes) {
            if (!unescape(literal, bytes, error)) return false;
        } else {
            bytes = literal;
        }
        literal.clear();
        if (!parts_.empty() && parts_.back().kind == Kind::literal)
            parts_.back().text += bytes;
        else
            parts_.push_back(Part{Kind::literal, std::move(bytes)});
        return true;
    };
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] == '{') {
            const std::string_view rest = text.substr(i);
            if (rest.substr(0, 5) == "{seq}") {
                if (!flush()) return false;
                parts_.push_back(Part{Kind::seq, {}});
                i += 5;
                continue;
            }
            if (rest.substr(0, 6) == "{conn}") {
                if (!flush()) return false;
                parts_.push_back(Part{Kind::conn, {}});
                i += 6;
                continue;
            }
            if (rest.substr(0, 6) == "{rand:") {
                const std::size_t close = rest.find('}');
                const std::string_view num =
                    rest.substr(6, close == std::string_view::npos ? 0 : close - 6);
                std::size_t n = 0;
                bool ok = !num.empty() && num.size() <= 5;
                for (char c : num)
                    ok = ok && c >= '0' && c <= '9', n = n * 10 + static_cast<std::size_t>(c - '0');
                if (!ok || n < 1 || n > 65536) {
                    error = "{rand:N} needs N from 1 to 65536";
                    return false;
                }
                if (!flush()) return false;
                parts_.push_back(Part{Kind::rand, {}, n});
                i += close + 1;
                continue;
            }
        }
        literal += text[i++];
    }
    return flush();
}

void RequestTemplate::render(std::uint64_t seq, std::uint64_t conn, std::uint64_t& rng,
                             std::string& out) const {
    static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char num[24];
    for (const Part& p : parts_) {
        switch (p.kind) {
            case Kind::literal:
                out += p.text;
                break;
            case Kind::seq:
            case Kind::conn: {
                std::uint64_t v = p.kind == Kind::seq ? seq : conn;
                char* e = num + sizeof num;
                char* b = e;
                do {
                    *--b = static_cast<char>('0' + v % 10);
                    v /= 10;
                } while (v);
                out.append(b, static_cast<std::size_t>(e - b));
                break;
            }
            case Kind::rand:
                for (std::size_t i = 0; i < p.n; ++i) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    out += alphabet[(rng >> 32) % 36];
                }
                break;
        }
    }
}

bool parse_length_prefix(std::string_view spec, LengthPrefix& out, std::string& error) {
    error = "expected 1, 2 or 4, then le or be, then +OFFSET (e.g. 4be, 2le+1), not '" +
            std::string(spec) + "'";
    if (spec.empty() || (spec[0] != '1' && spec[0] != '2' && spec[0] != '4')) return false;
    LengthPrefix p;
    p.width = static_cast<unsigned>(spec[0] - '0');
    spec.remove_prefix(1);
    if (spec.substr(0, 2) == "le" || spec.substr(0, 2) == "be") {
        p.little_endian = spec[0] == 'l';
        spec.remove_prefix(2);
    }
    if (!spec.empty()) {
        if (spec[0] != '+' || spec.size() < 2 || spec.size() > 7) return false;
        std::size_t n = 0;
        for (char c : spec.substr(1)) {
            if (c < '0' || c > '9') return false;
            n = n * 10 + static_cast<std::size_t>(c - '0');
        }
        p.offset = n;
    }
    out = p;
    error.clear();
    return true;
}

void FrameSpec::prepare() {
    kmp.assign(delimiter.size(), 0);
    std::size_t k = 0;
    for (std::size_t i = 1; i < delimiter.size(); ++i) {
        while (k > 0 && delimiter[i] != delimiter[k]) k = kmp[k - 1];
        if (delimiter[i] == delimiter[k]) ++k;
        kmp[i] = k;
    }
}

Feed FramedParser::finish(std::size_t used) {
    mismatched_ = prefix_bad_ || seen_ < spec_->expect_prefix.size();
    seen_ = 0;
    total_ = 0;
    field_ = 0;
    matched_ = 0;
    prefix_bad_ = false;
    return Feed{used, Feed::Status::reply};
}

Feed FramedParser::fail(std::size_t used, std::string why) {
    error_ = std::move(why);
    return Feed{used, Feed::Status::bad};
}

Feed FramedParser::feed(std::string_view data) {
    const FrameSpec& s = *spec_;
    if (seen_ == 0) mismatched_ = false;
    std::size_t used = 0;
    // Checks the bytes data[used, used + n) (reply positions seen_ onwards) against the prefix.
    auto check = [&](std::size_t n) {
        const std::size_t p = s.expect_prefix.size();
        if (prefix_bad_ || seen_ >= p) return;
        const std::size_t k = std::min(n, p - seen_);
        if (std::memcmp(data.data() + used, s.expect_prefix.data() + seen_, k) != 0)
            prefix_bad_ = true;
    };
    switch (s.kind) {
        case FrameSpec::Kind::size: {
            const std::size_t n = std::min(data.size(), s.size - seen_);
            check(n);
            seen_ += n;
            used = n;
            if (seen_ == s.size) return finish(used);
            return Feed{used, Feed::Status::more};
        }
        case FrameSpec::Kind::length_prefix: {
            const std::size_t head = s.prefix.offset + s.prefix.width;
            while (seen_ < head && used < data.size()) {
                check(1);
                if (seen_ >= s.prefix.offset) {
                    const auto b =
                        static_cast<std::uint64_t>(static_cast<unsigned char>(data[used]));
                    const std::size_t pos = seen_ - s.prefix.offset;
                    field_ = s.prefix.little_endian ? field_ | (b << (8 * pos)) : (field_ << 8) | b;
                }
                ++seen_;
                ++used;
            }
            if (seen_ < head) return Feed{used, Feed::Status::more};
            if (total_ == 0) {
                if (field_ > s.max_reply)
                    return fail(used, "a length prefix of " + std::to_string(field_) +
                                          " bytes, more than the " + std::to_string(s.max_reply) +
                                          " allowed");
                total_ = head + static_cast<std::size_t>(field_);
            }
            const std::size_t n = std::min(data.size() - used, total_ - seen_);
            check(n);
            seen_ += n;
            used += n;
            if (seen_ == total_) return finish(used);
            return Feed{used, Feed::Status::more};
        }
        case FrameSpec::Kind::delimiter: {
            const std::string& d = s.delimiter;
            while (used < data.size()) {
                if (matched_ == 0) {
                    // Skip to the delimiter's first byte.
                    const void* hit = std::memchr(data.data() + used, d[0], data.size() - used);
                    const std::size_t n =
                        hit ? static_cast<std::size_t>(static_cast<const char*>(hit) -
                                                       (data.data() + used))
                            : data.size() - used;
                    check(n);
                    seen_ += n;
                    used += n;
                    if (seen_ > s.max_reply)
                        return fail(used, "no delimiter in the first " +
                                              std::to_string(s.max_reply) + " bytes");
                    if (!hit) break;
                }
                const char c = data[used];
                while (matched_ > 0 && d[matched_] != c) matched_ = s.kmp[matched_ - 1];
                if (d[matched_] == c) ++matched_;
                check(1);
                ++seen_;
                ++used;
                if (matched_ == d.size()) return finish(used);
            }
            return Feed{used, Feed::Status::more};
        }
    }
    return Feed{used, Feed::Status::more};
}

Feed HttpParser::fail(std::size_t used, std::string why) {
    error_ = std::move(why);
    return Feed{used, Feed::Status::bad};
}

bool HttpParser::take_line(std::string_view data, std::size_t& used, bool& too_long) {
    const void* nl = std::memchr(data.data(), '\n', data.size());
    const std::size_t n =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - data.data()) + 1 : data.size();
    line_.append(data.data(), n);
    used = n;
    head_bytes_ += n;
    too_long = line_.size() > 8192 || head_bytes_ > 65536;
    return nl != nullptr;
}

bool HttpParser::on_status_line(std::string_view line) {
    // HTTP/1.x SSS[ reason]
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ')
        return false;
    int st = 0;
    for (int i = 9; i < 12; ++i) {
        if (line[static_cast<std::size_t>(i)] < '0' || line[static_cast<std::size_t>(i)] > '9')
            return false;
        st = st * 10 + (line[static_cast<std::size_t>(i)] - '0');
    }
    if (st < 100 || (line.size() > 12 && line[12] != ' ')) return false;
    status_ = st;
    minor_ = line[7] - '0';
    connection_close_ = connection_keep_alive_ = chunked_ = has_length_ = false;
    length_ = left_ = body_seen_ = 0;
    return true;
}

bool HttpParser::on_header(std::string_view line) {
    if (line.front() == ' ' || line.front() == '\t') return false;  // obsolete line folding
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    const std::string_view name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return false;
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
        if (value.empty() || value.size() > 18) return false;
        std::uint64_t n = 0;
        for (char c : value) {
            if (c < '0' || c > '9') return false;
            n = n * 10 + static_cast<std::uint64_t>(c - '0');
        }
        if (has_length_ && n != length_) return false;
        has_length_ = true;
        length_ = n;
    } else if (iequals(name, "transfer-encoding")) {
        // Chunked must be the last coding applied; anything else runs to the connection's end.
        std::string_view last = value;
        if (const std::size_t comma = value.rfind(','); comma != std::string_view::npos)
            last = trim(value.substr(comma + 1));
        chunked_ = iequals(last, "chunked");
        if (!chunked_) connection_close_ = true;
    } else if (iequals(name, "connection")) {
        std::string_view rest = value;
        while (!rest.empty()) {
            const std::size_t comma = rest.find(',');
            const std::string_view token = trim(rest.substr(0, comma));
            if (iequals(token, "close")) connection_close_ = true;
            if (iequals(token, "keep-alive")) connection_keep_alive_ = true;
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return true;
}

bool HttpParser::end_of_head() {
    if (status_ < 200 && status_ != 101) {  // interim (100 Continue, 103 Early Hints): skip it
        state_ = State::status_line;
        head_bytes_ = 0;
        return false;
    }
    keep_alive_ = !connection_close_ && (minor_ >= 1 || connection_keep_alive_);
    if (status_ == 101) keep_alive_ = false;  // another protocol follows: not ours to read
    if (head_ || status_ == 101 || status_ == 204 || status_ == 304) {
        state_ = State::status_line;
        return true;
    }
    if (chunked_) {
        state_ = State::chunk_size;
        return false;
    }
    if (has_length_) {
        left_ = length_;
        state_ = left_ ? State::body : State::status_line;
        return left_ == 0;
    }
    // Neither: the body is whatever comes until the server closes.
    keep_alive_ = false;
    state_ = State::to_eof;
    return false;
}

Feed HttpParser::feed(std::string_view data) {
    std::size_t used = 0;
    while (used < data.size()) {
        const std::string_view rest = data.substr(used);
        switch (state_) {
            case State::body:
            case State::chunk_data: {
                const std::size_t n =
                    static_cast<std::size_t>(std::min<std::uint64_t>(left_, rest.size()));
                left_ -= n;
                body_seen_ += n;
                used += n;
                if (left_ == 0) {
                    if (state_ == State::body) {
                        state_ = State::status_line;
                        head_bytes_ = 0;
                        return Feed{used, Feed::Status::reply};
                    }
                    state_ = State::chunk_end;
                }
                continue;
            }
            case State::to_eof:
                body_seen_ += rest.size();
                return Feed{data.size(), Feed::Status::more};
            default:
                break;
        }
        std::size_t n = 0;
        bool too_long = false;
        const bool whole = take_line(rest, n, too_long);
        used += n;
        if (too_long) return fail(used, "an HTTP header line or head too long");
        if (!whole) continue;
        std::string_view line(line_);
        line.remove_suffix(1);  // '\n'
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        bool reply = false;
        switch (state_) {
            case State::status_line:
                if (line.empty()) break;  // a stray CRLF between replies
                if (!on_status_line(line)) return fail(used, "not an HTTP/1.x status line");
                state_ = State::headers;
                break;
            case State::headers:
                if (line.empty())
                    reply = end_of_head();
                else if (!on_header(line))
                    return fail(used, "a malformed HTTP header");
                break;
            case State::chunk_size: {
                std::uint64_t size = 0;
                std::size_t digits = 0;
                for (; digits < line.size() && hex_digit(line[digits]) >= 0; ++digits) {
                    if (digits == 15) return fail(used, "a chunk size too large");
                    size = size * 16 + static_cast<std::uint64_t>(hex_digit(line[digits]));
                }
                const std::string_view ext = trim(line.substr(digits));
                if (digits == 0 || (!ext.empty() && ext.front() != ';'))
                    return fail(used, "a malformed chunk size");
                left_ = size;
                state_ = size ? State::chunk_data : State::trailers;
                break;
            }
            case State::chunk_end:
                if (!line.empty()) return fail(used, "no CRLF after a chunk's data");
                state_ = State::chunk_size;
                break;
            case State::trailers:
                if (line.empty()) {
                    state_ = State::status_line;
                    reply = true;
                }
                break;
            default:
                break;
        }
        line_.clear();
        if (reply) {
            head_bytes_ = 0;
            return Feed{used, Feed::Status::reply};
        }
    }
    return Feed{used, Feed::Status::more};
}

bool HttpParser::eof() {
    if (state_ != State::to_eof) return false;
    state_ = State::status_line;
    head_bytes_ = 0;
    return true;
}

}  // namespace aioring::load
