// aioring-load's command line (docs/aioring-load.md), parsed without exiting so
// that tests can check every usage error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace aioring::load {

enum class Mode { echo, stream, udp };
const char* to_string(Mode m);

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
    bool progress = false;     // forced on (--progress); otherwise only when stderr is a tty
    bool no_progress = false;  // forced off
    bool tls = false;
    std::string cafile;
    std::string server_hostname;
    double connect_timeout = 5;
};

struct ParseResult {
    enum class Status { ok, help, error } status = Status::ok;
    Options options;
    std::string error;  // one line, for Status::error
};

ParseResult parse_options(const std::vector<std::string>& args);
const char* usage();

}  // namespace aioring::load
