// SPDX-License-Identifier: Apache-2.0
// The load generator itself: N threads, one aioring EventLoop each, the connections spread
// across them; closed loop (pipeline) or open loop (rate); every request accounted for.
#pragma once

#include <atomic>
#include <cstdio>
#include <string>

#include "options.hpp"
#include "result.hpp"

namespace aioring::load {

struct Outcome {
    Result result;
    bool no_connection = false;  // not a single connection could be made: exit 1
    bool fatal = false;          // a thread failed (no event loop, no file descriptors): exit 1
    std::string cause;           // why, in words ("Connection refused")
};

// Runs the load described by `o`. With `progress` non-null, one line a second goes there. Once
// `*interrupt` turns true (a signal handler's flag) the measured window ends there.
Outcome run_load(const Options& o, std::FILE* progress,
                 const std::atomic<bool>* interrupt = nullptr);

// The deterministic byte stream every connection sends (from its own starting offset), so that
// checking an echo is a memcmp against a table.
struct Pattern {
    static constexpr std::size_t period = 65521;  // prime: no message size lines up with it
    // At least `period` contiguous bytes of the stream starting at `pos`.
    static const char* at(std::uint64_t pos);
};

}  // namespace aioring::load
