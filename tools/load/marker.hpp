// SPDX-License-Identifier: Apache-2.0
// The marker protocol's scanner, tcpkali-style: each request carries a 32-byte latency marker
// naming its connection and number, and whatever comes back (an echo, a relay, a stream with
// anything in between and cut anywhere) is searched for markers. Pure: no loop, no socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "parsers.hpp"

namespace aioring::load {

// "[[al:" 16 hex digits (the request's number) ":" 8 hex digits (the connection's) "]]".
constexpr std::size_t marker_size = 32;
// Appends request `seq`'s marker for connection `conn` to `out`.
void append_marker(std::uint64_t seq, std::uint64_t conn, std::string& out);

class MarkerScanner {
public:
    // Consumes bytes up to the end of the next whole marker (status reply: see seq() and
    // conn()), or all of them (more). Never bad: what is not a marker is skipped.
    Feed feed(std::string_view data);
    std::uint64_t seq() const { return seq_; }
    std::uint64_t conn() const { return conn_; }

private:
    std::size_t state_ = 0;  // marker bytes matched so far
    std::uint64_t seq_acc_ = 0, conn_acc_ = 0;
    std::uint64_t seq_ = 0, conn_ = 0;
};

}  // namespace aioring::load
