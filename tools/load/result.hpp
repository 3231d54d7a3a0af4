// SPDX-License-Identifier: Apache-2.0
// What a load run measured, merged across threads, and the two ways of printing it: the human
// summary and the single JSON object of docs/aioring-load.md.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "histogram.hpp"
#include "options.hpp"

namespace aioring::load {

// One thread's (or the merged) counts for the measured window.
struct Stats {
    std::uint64_t messages = 0;        // messages echoed back and verified
    std::uint64_t bytes = 0;           // payload bytes verified (one direction)
    std::uint64_t mismatches = 0;      // messages whose echo differed from what was sent
    std::uint64_t early_closes = 0;    // connections the server closed before the end
    std::uint64_t connect_errors = 0;  // connections that could not be made, or failed later
    std::uint64_t timeouts = 0;        // requests not answered within --timeout (udp: a second)
    std::uint64_t connections_made = 0;
    std::array<std::uint64_t, 6> status{};  // http: replies by status class, [2] for 2xx
    Histogram latency;                      // nanoseconds

    std::uint64_t errors() const { return mismatches + early_closes + connect_errors; }
    std::uint64_t failures() const { return errors() + timeouts; }
    // Requests that ended one way or another: answered, answered wrongly, or timed out.
    std::uint64_t requests() const { return messages + mismatches + timeouts; }
    void merge(const Stats& o);
};

struct Result {
    Options options;
    unsigned threads = 1;
    double duration_s = 0;
    Stats stats;
    std::string first_error;  // words for the first connection error, if any
    double cpu_s = 0;         // the tool's own CPU time (user + system) over the window
    // A merged result's rates are the sums of its parts' (each over its own window).
    bool rates_given = false;
    double msgs_per_s = 0, mb_per_s = 0, achieved_rate = 0;
    std::size_t merged_from = 0;  // how many results were merged into this one (0: a run)
};

// What the run's numbers mean for its exit status: exit 1 with a one-line reason when nothing
// was answered or failures passed --max-failures; warnings (one line each) otherwise.
struct Verdict {
    int exit_code = 0;
    std::string reason;
    std::vector<std::string> warnings;
};
Verdict judge(const Result& r);

// Exactly one JSON object, one line, with the contract's keys first, the histogram last.
std::string to_json(const Result& r);
// The "histogram" value: {"schema_version": 1, "unit": "ns", "count", "min", "max",
// "buckets": [[LOW_NS, COUNT], ...]} (non-empty buckets, ascending; docs/aioring-load.md).
std::string histogram_json(const Histogram& h);
constexpr int histogram_schema_version = 1;
// A few lines for people.
std::string to_summary(const Result& r);

}  // namespace aioring::load
