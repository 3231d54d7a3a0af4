// Parses aioring-load's flags: every value checked, every mistake a one-line message.
#include "options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

namespace aioring::load {

const char* to_string(Mode m) {
    switch (m) {
        case Mode::echo: return "echo";
        case Mode::stream: return "stream";
        case Mode::udp: return "udp";
    }
    return "?";
}

const char* usage() {
    return "usage: aioring-load --port P [--host 127.0.0.1] [--mode echo|stream|udp]\n"
           "                    [--connections 50] [--size 64] [--pipeline 1] [--duration 10]\n"
           "                    [--warmup 1] [--rate 0] [--threads 1] [--json] [--progress]\n"
           "                    [--no-progress] [--connect-timeout 5] [--timeout 2]\n"
           "                    [--max-failures 0.5]\n"
           "                    [--tls [--cafile FILE] [--server-hostname NAME]]\n"
           "\n"
           "  --mode echo      each connection sends --size bytes and waits for all of them to\n"
           "                   come back, up to --pipeline messages in flight\n"
           "  --mode stream    each connection sends as fast as flow control allows\n"
           "  --mode udp       datagrams of --size bytes, one outstanding per socket; a datagram\n"
           "                   not answered within a second counts as an error\n"
           "  --rate R         open loop: R messages a second in all, evenly spaced, latency from\n"
           "                   each message's due time; 0 (default) is closed loop\n"
           "  --threads N      N event loops on N threads, connections spread across them\n"
           "  --json           print one JSON object instead of the summary\n"
           "  --progress       progress on stderr once a second (default: when it is a terminal)\n"
           "  --timeout T      a request unanswered for T counts in \"timeouts\"; so does every\n"
           "                   request still unanswered T after the end (udp: 1 s unless given)\n"
           "  --max-failures F exit 1 when timeouts + errors exceed F of the requests\n"
           "Durations take a unit: 500ms, 10s, 2m, 1h (a plain number is seconds).\n"
           "Every echoed byte is checked; mismatches, early closes and connection errors count as\n"
           "errors. Exit 1 if no connection could be made, no request got a reply, or failures\n"
           "passed --max-failures; 2 on a usage error; else 0.\n";
}

namespace {

bool parse_uint(const std::string& v, unsigned long long lo, unsigned long long hi,
                unsigned long long& out) {
    if (v.empty() || v[0] == '-' || v[0] == '+' || v[0] == ' ') return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || n < lo || n > hi) return false;
    out = n;
    return true;
}

bool parse_double(const std::string& v, double lo, double hi, double& out) {
    if (v.empty() || v[0] == ' ') return false;
    char* end = nullptr;
    errno = 0;
    double n = std::strtod(v.c_str(), &end);
    if (*end != '\0' || errno != 0 || !std::isfinite(n) || n < lo || n > hi) return false;
    out = n;
    return true;
}

}  // namespace

bool parse_duration(const std::string& v, double lo, double hi, double& out) {
    if (v.empty() || v[0] == ' ') return false;
    char* end = nullptr;
    errno = 0;
    double n = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || errno != 0 || !std::isfinite(n)) return false;
    const std::string unit(end);
    if (unit == "ms") n /= 1000;
    else if (unit == "m") n *= 60;
    else if (unit == "h") n *= 3600;
    else if (!unit.empty() && unit != "s") return false;
    if (n < lo || n > hi) return false;
    out = n;
    return true;
}

ParseResult parse_options(const std::vector<std::string>& args) {
    ParseResult r;
    Options& o = r.options;
    auto fail = [&](std::string msg) {
        r.status = ParseResult::Status::error;
        r.error = std::move(msg);
        return r;
    };
    bool port_given = false;
    std::string cur;
    auto bad = [&](const std::string& v, const std::string& expected) {
        return "bad value for --" + cur + ": '" + v + "' (expected " + expected + ")";
    };

    using Setter = std::function<bool(const std::string&, std::string&)>;
    auto uint_into = [&](auto& field, unsigned long long lo, unsigned long long hi) {
        return Setter([&field, lo, hi, &bad](const std::string& v, std::string& err) {
            unsigned long long n;
            if (!parse_uint(v, lo, hi, n)) {
                err = bad(v, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
                return false;
            }
            field = static_cast<std::remove_reference_t<decltype(field)>>(n);
            return true;
        });
    };
    auto double_into = [&](double& field, double lo, double hi, const char* expected) {
        return Setter([&field, lo, hi, expected, &bad](const std::string& v, std::string& err) {
            if (!parse_double(v, lo, hi, field)) {
                err = bad(v, expected);
                return false;
            }
            return true;
        });
    };
    auto duration_into = [&](double& field, double lo, double hi, const char* expected) {
        return Setter([&field, lo, hi, expected, &bad](const std::string& v, std::string& err) {
            if (!parse_duration(v, lo, hi, field)) {
                err = bad(v, expected);
                return false;
            }
            return true;
        });
    };
    std::map<std::string, Setter> values{
        {"host", [&](const std::string& v, std::string& err) {
             if (v.empty()) {
                 err = "bad value for --host: ''";
                 return false;
             }
             o.host = v;
             return true;
         }},
        {"port", [&](const std::string& v, std::string& err) {
             unsigned long long n;
             if (!parse_uint(v, 1, 65535, n)) {
                 err = bad(v, "a port from 1 to 65535");
                 return false;
             }
             o.port = static_cast<std::uint16_t>(n);
             port_given = true;
             return true;
         }},
        {"mode", [&](const std::string& v, std::string& err) {
             if (v == "echo") o.mode = Mode::echo;
             else if (v == "stream") o.mode = Mode::stream;
             else if (v == "udp") o.mode = Mode::udp;
             else {
                 err = "unknown mode '" + v + "' (expected echo, stream or udp)";
                 return false;
             }
             return true;
         }},
        {"connections", uint_into(o.connections, 1, 100000)},
        {"size", uint_into(o.size, 1, 64u << 20)},
        {"pipeline", uint_into(o.pipeline, 1, 65536)},
        {"threads", uint_into(o.threads, 1, 256)},
        {"duration", duration_into(o.duration, 0.001, 1e6, "a duration > 0 such as 10, 10s, 500ms, 2m")},
        {"warmup", duration_into(o.warmup, 0, 1e6, "a duration >= 0 such as 1, 1s, 500ms")},
        {"timeout", [&](const std::string& v, std::string& err) {
             if (!parse_duration(v, 0.001, 3600, o.timeout)) {
                 err = bad(v, "a duration > 0 such as 2, 2s, 500ms");
                 return false;
             }
             o.timeout_given = true;
             return true;
         }},
        {"max-failures", double_into(o.max_failures, 0, 1, "a fraction from 0 to 1")},
        {"rate", double_into(o.rate, 0, 1e9, "messages a second >= 0")},
        {"connect-timeout", duration_into(o.connect_timeout, 0.001, 3600, "a duration > 0 such as 5, 5s")},
        {"cafile", [&](const std::string& v, std::string&) { o.cafile = v; return true; }},
        {"server-hostname",
         [&](const std::string& v, std::string&) { o.server_hostname = v; return true; }},
    };
    std::map<std::string, bool*> switches{{"json", &o.json},
                                          {"progress", &o.progress},
                                          {"no-progress", &o.no_progress},
                                          {"tls", &o.tls}};

    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--help" || a == "-h") {
            r.status = ParseResult::Status::help;
            return r;
        }
        if (a.size() < 3 || a.compare(0, 2, "--") != 0) return fail("unexpected argument '" + a + "'");
        std::string name = a.substr(2), value;
        bool has_value = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name.resize(eq);
            has_value = true;
        }
        cur = name;
        if (auto s = switches.find(name); s != switches.end()) {
            if (has_value) return fail("--" + name + " takes no value");
            *s->second = true;
            continue;
        }
        auto it = values.find(name);
        if (it == values.end()) return fail("unknown option '--" + name + "'");
        if (!has_value) {
            if (i + 1 >= args.size()) return fail("--" + name + " needs a value");
            value = args[++i];
        }
        std::string err;
        if (!it->second(value, err)) return fail(err);
    }
    if (!port_given) return fail("--port is required");
    if (o.tls && o.mode == Mode::udp) return fail("--tls works with --mode echo or stream, not udp");
    if (o.mode == Mode::udp && o.size > 65507)
        return fail("--size " + std::to_string(o.size) + " is larger than a UDP datagram (65507)");
    if ((!o.cafile.empty() || !o.server_hostname.empty()) && !o.tls)
        return fail("--cafile and --server-hostname need --tls");
    if (o.threads > o.connections) o.threads = o.connections;
    return r;
}

}  // namespace aioring::load
