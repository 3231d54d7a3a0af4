// SPDX-License-Identifier: Apache-2.0
// aioring-load's command line (docs/aioring-load.md), parsed without exiting so
// that tests can check every usage error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parsers.hpp"

namespace aioring::load {

enum class Mode { echo, stream, udp };
const char* to_string(Mode m);

// What the requests and replies are: echo (every byte back, checked), framed (a request
// template and a reply framing), http (HTTP/1.1 keep-alive), marker (latency markers found in
// whatever stream comes back).
enum class Proto { echo, framed, http, marker };
const char* to_string(Proto p);

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    Mode mode = Mode::echo;
    unsigned connections = 50;
    std::size_t size = 64;
    unsigned pipeline = 1;
    double duration = 10;
    double warmup = 1;
    double rate = 0;  // messages a second in all; 0: closed loop
    unsigned threads = 1;
    bool json = false;
    bool latency = false;      // the percentile spectrum in the summary
    std::string interval_log;  // a file for one JSON line a second (empty: none)
    bool progress = false;     // forced on (--progress); otherwise only when stderr is a tty
    bool no_progress = false;  // forced off
    bool tls = false;
    std::string cafile;
    std::string server_hostname;
    double connect_timeout = 5;
    double timeout = 2;          // a request unanswered this long counts as timed out
    bool timeout_given = false;  // udp keeps its one second unless --timeout is given
    double max_failures = 0.5;   // (timeouts + errors) / requests above this: exit 1

    Proto protocol = Proto::echo;
    // framed: the request (template) and how replies end.
    RequestTemplate request;
    FrameSpec frame;
    // http
    std::string url_path = "/";
    std::string method = "GET";
    std::vector<std::string> headers;  // "Name: value"
    std::string body;
    bool body_given = false;
    // Reconnect after this many requests on a connection (0: never).
    std::uint64_t requests_per_connection = 0;
    double connect_rate = 0;  // connections opened a second, in all (0: all at once)
    double start_at = 0;      // wall-clock UNIX time to wait for before connecting (0: now)
};

// A duration: a number with an optional unit suffix (ms, s, m, h; none means seconds). False on
// anything else, or a value outside [lo, hi] seconds.
bool parse_duration(const std::string& v, double lo, double hi, double& out);

struct ParseResult {
    enum class Status { ok, help, version, error } status = Status::ok;
    Options options;
    std::string error;  // one line, for Status::error
};

ParseResult parse_options(const std::vector<std::string>& args);
const char* usage();
const char* version();  // "aioring-load VERSION"
// HOST:PORT, or [HOST]:PORT for an IPv6 address.
std::string host_port(const std::string& host, std::uint16_t port);

}  // namespace aioring::load
