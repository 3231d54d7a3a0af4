// SPDX-License-Identifier: Apache-2.0
// Parses aioring-load's flags: every value checked, every mistake a one-line message.
#include "options.hpp"

#include "marker.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>

namespace aioring::load {

const char* to_string(Mode m) {
    switch (m) {
        case Mode::echo:
            return "echo";
        case Mode::stream:
            return "stream";
        case Mode::udp:
            return "udp";
    }
    return "?";
}

const char* to_string(Proto p) {
    switch (p) {
        case Proto::echo:
            return "echo";
        case Proto::framed:
            return "framed";
        case Proto::http:
            return "http";
        case Proto::marker:
            return "marker";
    }
    return "?";
}

const char* usage() {
    return "usage: aioring-load --port P [--host 127.0.0.1] [--protocol echo|framed|http|marker]\n"
           "                    [--mode echo|stream|udp] [--connections 50] [--size 64]\n"
           "                    [--pipeline 1] [--duration 10] [--warmup 1] [--rate 0]\n"
           "                    [--threads 1] [--timeout 2] [--max-failures 0.5]\n"
           "                    [--json] [--latency] [--progress] [--no-progress]\n"
           "                    [--connect-timeout 5] [--connect-rate N]\n"
           "                    [--requests-per-connection N] [--start-at UNIX_SECONDS]\n"
           "                    [--interval-log FILE] [--version]\n"
           "                    [--tls [--cafile FILE] [--server-hostname NAME]]\n"
           "       framed:      (--request TEMPLATE | --request-file FILE)\n"
           "                    (--reply-size N | --reply-delimiter STR |\n"
           "                     --reply-length-prefix 1|2|4[le|be][+OFFSET]) [--expect-prefix "
           "STR]\n"
           "       http:        [--url-path /] [--method GET] [--header 'K: V']... [--body STR]\n"
           "       aioring-load merge FILE...   (--json results of several runs as one)\n"
           "\n"
           "  --protocol echo  (default) the server echoes; every byte is checked\n"
           "  --protocol framed  requests from a template ({seq}, {conn}, {rand:N}; C escapes\n"
           "                   such as \\r\\n in --request), replies framed by size, delimiter or\n"
           "                   length prefix; a reply without --expect-prefix is a mismatch\n"
           "  --protocol http  HTTP/1.1 keep-alive; replies by Content-Length or chunked; status\n"
           "                   classes counted (non-2xx reported, not errors)\n"
           "  --protocol marker  messages of --size bytes, each with a latency marker; the\n"
           "                   markers are looked for in whatever comes back (tcpkali-style)\n"
           "  --mode echo      (echo protocol) each connection sends --size bytes and waits for\n"
           "                   them, up to --pipeline messages in flight\n"
           "  --mode stream    each connection sends as fast as flow control allows\n"
           "  --mode udp       datagrams of --size bytes, one outstanding per socket\n"
           "  --pipeline N     requests in flight per connection (closed loop)\n"
           "  --rate R         open loop: R requests a second in all, evenly spaced, latency from\n"
           "                   each one's due time; 0 (default) is closed loop\n"
           "  --threads N      N event loops on N threads, connections spread across them\n"
           "  --timeout T      a request unanswered for T counts in \"timeouts\"; so does every\n"
           "                   request still unanswered T after the end (udp: 1 s unless given)\n"
           "  --max-failures F exit 1 when timeouts + errors exceed F of the requests\n"
           "  --requests-per-connection N  reconnect after N requests on a connection\n"
           "  --connect-rate N open N connections a second (default: all at once) before the load\n"
           "  --start-at T     wait until UNIX time T (seconds) before connecting: several "
           "copies,\n"
           "                   on several hosts, start together\n"
           "  --json           print one JSON object instead of the summary, the full latency\n"
           "                   histogram in it (\"histogram\", lossless, with a schema_version)\n"
           "  --latency        the percentile spectrum, p50 to p99.999 and max, and the\n"
           "                   HdrHistogram-style distribution, in the summary\n"
           "  --progress       progress on stderr once a second (default: when it is a terminal)\n"
           "  --interval-log FILE  one JSON line a second into FILE: replies, failures and\n"
           "                   latency percentiles of that second (warm-up included, marked)\n"
           "Durations take a unit: 500ms, 10s, 2m, 1h (a plain number is seconds).\n"
           "Mismatches, early closes and connection errors count as errors. Exit 1 if no\n"
           "connection could be made, no request got a reply, or failures passed --max-failures;\n"
           "2 on a usage error; else 0.\n";
}

const char* version() { return "aioring-load " AIORING_VERSION; }

std::string host_port(const std::string& host, std::uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
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
    if (unit == "ms")
        n /= 1000;
    else if (unit == "m")
        n *= 60;
    else if (unit == "h")
        n *= 3600;
    else if (!unit.empty() && unit != "s")
        return false;
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
    std::map<std::string, bool> given;
    std::string request_text, request_file, delimiter, length_prefix, expect_prefix;
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
        {"host",
         [&](const std::string& v, std::string& err) {
             if (v.empty()) {
                 err = "bad value for --host: ''";
                 return false;
             }
             o.host = v;
             return true;
         }},
        {"port",
         [&](const std::string& v, std::string& err) {
             unsigned long long n;
             if (!parse_uint(v, 1, 65535, n)) {
                 err = bad(v, "a port from 1 to 65535");
                 return false;
             }
             o.port = static_cast<std::uint16_t>(n);
             port_given = true;
             return true;
         }},
        {"mode",
         [&](const std::string& v, std::string& err) {
             if (v == "echo")
                 o.mode = Mode::echo;
             else if (v == "stream")
                 o.mode = Mode::stream;
             else if (v == "udp")
                 o.mode = Mode::udp;
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
        {"duration",
         duration_into(o.duration, 0.001, 1e6, "a duration > 0 such as 10, 10s, 500ms, 2m")},
        {"warmup", duration_into(o.warmup, 0, 1e6, "a duration >= 0 such as 1, 1s, 500ms")},
        {"timeout",
         [&](const std::string& v, std::string& err) {
             if (!parse_duration(v, 0.001, 3600, o.timeout)) {
                 err = bad(v, "a duration > 0 such as 2, 2s, 500ms");
                 return false;
             }
             o.timeout_given = true;
             return true;
         }},
        {"max-failures", double_into(o.max_failures, 0, 1, "a fraction from 0 to 1")},
        {"rate", double_into(o.rate, 0, 1e9, "messages a second >= 0")},
        {"connect-timeout",
         duration_into(o.connect_timeout, 0.001, 3600, "a duration > 0 such as 5, 5s")},
        {"cafile",
         [&](const std::string& v, std::string&) {
             o.cafile = v;
             return true;
         }},
        {"protocol",
         [&](const std::string& v, std::string& err) {
             if (v == "echo")
                 o.protocol = Proto::echo;
             else if (v == "framed")
                 o.protocol = Proto::framed;
             else if (v == "http")
                 o.protocol = Proto::http;
             else if (v == "marker")
                 o.protocol = Proto::marker;
             else {
                 err = "unknown protocol '" + v + "' (expected echo, framed, http or marker)";
                 return false;
             }
             return true;
         }},
        {"request",
         [&](const std::string& v, std::string&) {
             request_text = v;
             return true;
         }},
        {"interval-log",
         [&](const std::string& v, std::string& err) {
             if (v.empty()) {
                 err = "bad value for --interval-log: ''";
                 return false;
             }
             o.interval_log = v;
             return true;
         }},
        {"request-file",
         [&](const std::string& v, std::string&) {
             request_file = v;
             return true;
         }},
        {"reply-size", uint_into(o.frame.size, 1, 64u << 20)},
        {"reply-delimiter",
         [&](const std::string& v, std::string&) {
             delimiter = v;
             return true;
         }},
        {"reply-length-prefix",
         [&](const std::string& v, std::string&) {
             length_prefix = v;
             return true;
         }},
        {"expect-prefix",
         [&](const std::string& v, std::string&) {
             expect_prefix = v;
             return true;
         }},
        {"url-path",
         [&](const std::string& v, std::string& err) {
             if (v.empty() || v[0] != '/' || v.find_first_of(" \r\n") != std::string::npos) {
                 err = "bad value for --url-path: '" + v + "' (expected a path starting with /)";
                 return false;
             }
             o.url_path = v;
             return true;
         }},
        {"method",
         [&](const std::string& v, std::string& err) {
             bool ok = !v.empty();
             for (char c : v) ok = ok && c >= 'A' && c <= 'Z';
             if (!ok) {
                 err = "bad value for --method: '" + v + "' (expected GET, POST, HEAD, ...)";
                 return false;
             }
             o.method = v;
             return true;
         }},
        {"header",
         [&](const std::string& v, std::string& err) {
             const auto colon = v.find(':');
             if (colon == std::string::npos || colon == 0 ||
                 v.find_first_of("\r\n") != std::string::npos ||
                 v.substr(0, colon).find_first_of(" \t") != std::string::npos) {
                 err = "bad value for --header: '" + v + "' (expected 'Name: value')";
                 return false;
             }
             o.headers.push_back(v);
             return true;
         }},
        {"body",
         [&](const std::string& v, std::string&) {
             o.body = v;
             o.body_given = true;
             return true;
         }},
        {"requests-per-connection", uint_into(o.requests_per_connection, 1, 1ull << 62)},
        {"connect-rate", double_into(o.connect_rate, 0.001, 1e7, "connections a second > 0")},
        {"start-at",
         double_into(o.start_at, 1, 1e11, "a UNIX time in seconds, e.g. $(date +%s) + 10")},
        {"server-hostname",
         [&](const std::string& v, std::string&) {
             o.server_hostname = v;
             return true;
         }},
    };
    std::map<std::string, bool*> switches{{"json", &o.json},
                                          {"latency", &o.latency},
                                          {"progress", &o.progress},
                                          {"no-progress", &o.no_progress},
                                          {"tls", &o.tls}};

    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--help" || a == "-h") {
            r.status = ParseResult::Status::help;
            return r;
        }
        if (a == "--version") {
            r.status = ParseResult::Status::version;
            return r;
        }
        if (a.size() < 3 || a.compare(0, 2, "--") != 0)
            return fail("unexpected argument '" + a + "'");
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
        given[name] = true;
    }
    auto any = [&](std::initializer_list<const char*> names) -> std::string {
        for (const char* n : names)
            if (given.count(n)) return n;
        return "";
    };
    const std::string framed_only = any({"request", "request-file", "reply-size", "reply-delimiter",
                                         "reply-length-prefix", "expect-prefix"});
    const std::string http_only = any({"url-path", "method", "header", "body"});
    if (o.protocol != Proto::framed && !framed_only.empty())
        return fail("--" + framed_only + " needs --protocol framed");
    if (o.protocol != Proto::http && !http_only.empty())
        return fail("--" + http_only + " needs --protocol http");
    if (o.protocol != Proto::echo) {
        if (given.count("mode")) return fail("--mode is for --protocol echo");
        if (given.count("size") && o.protocol != Proto::marker)
            return fail("--size is for --protocol echo or marker (the request says its size)");
    }
    if (o.protocol == Proto::marker && o.size < marker_size)
        return fail("--size " + std::to_string(o.size) +
                    " is too small for --protocol marker (at least " + std::to_string(marker_size) +
                    ", the marker's size)");
    if (o.protocol == Proto::framed) {
        std::string err;
        if (request_text.empty() == request_file.empty())
            return fail("--protocol framed needs one of --request TEMPLATE or --request-file FILE");
        if (!request_file.empty()) {
            std::FILE* f = std::fopen(request_file.c_str(), "rb");
            if (!f)
                return fail("cannot read --request-file " + request_file + ": " +
                            std::strerror(errno));
            std::string bytes;
            char buf[65536];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
            std::fclose(f);
            if (bytes.empty()) return fail("--request-file " + request_file + " is empty");
            if (!o.request.parse(bytes, false, err))
                return fail("--request-file " + request_file + ": " + err);
        } else if (!o.request.parse(request_text, true, err)) {
            return fail("bad value for --request: " + err);
        }
        const int framings = (given.count("reply-size") ? 1 : 0) +
                             (given.count("reply-delimiter") ? 1 : 0) +
                             (given.count("reply-length-prefix") ? 1 : 0);
        if (framings != 1)
            return fail(
                "--protocol framed needs one of --reply-size N, --reply-delimiter STR, "
                "--reply-length-prefix SPEC");
        if (given.count("reply-size")) {
            o.frame.kind = FrameSpec::Kind::size;
        } else if (given.count("reply-delimiter")) {
            o.frame.kind = FrameSpec::Kind::delimiter;
            if (!unescape(delimiter, o.frame.delimiter, err))
                return fail("bad value for --reply-delimiter: " + err);
            if (o.frame.delimiter.empty()) return fail("bad value for --reply-delimiter: ''");
        } else {
            o.frame.kind = FrameSpec::Kind::length_prefix;
            if (!parse_length_prefix(length_prefix, o.frame.prefix, err))
                return fail("bad value for --reply-length-prefix: " + err);
        }
        if (!unescape(expect_prefix, o.frame.expect_prefix, err))
            return fail("bad value for --expect-prefix: " + err);
        o.frame.prepare();
    }
    if (!port_given) return fail("--port is required");
    if (o.tls && o.mode == Mode::udp)
        return fail("--tls works with --mode echo or stream, not udp");
    if (o.mode == Mode::udp && o.size > 65507)
        return fail("--size " + std::to_string(o.size) + " is larger than a UDP datagram (65507)");
    if ((!o.cafile.empty() || !o.server_hostname.empty()) && !o.tls)
        return fail("--cafile and --server-hostname need --tls");
    if (o.threads > o.connections) o.threads = o.connections;
    return r;
}

}  // namespace aioring::load
