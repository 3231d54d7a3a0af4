// SPDX-License-Identifier: Apache-2.0
// Formats a load run's result as the contract's JSON object or as a human summary.
#include "result.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

namespace aioring::load {

void Stats::merge(const Stats& o) {
    messages += o.messages;
    bytes += o.bytes;
    mismatches += o.mismatches;
    early_closes += o.early_closes;
    connect_errors += o.connect_errors;
    timeouts += o.timeouts;
    connections_made += o.connections_made;
    for (std::size_t i = 0; i < status.size(); ++i) status[i] += o.status[i];
    latency.merge(o.latency);
}

namespace {

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            out += fmt::format("\\u{:04x}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// A latency in microseconds for JSON: null when nothing was measured (a zero would be a lie).
std::string json_us(const Histogram& h, double q) {
    if (h.count() == 0) return "null";
    return fmt::format("{:.1f}", us(q >= 1 ? h.max() : h.value_at_quantile(q)));
}

// Whether --pipeline means anything for this run: closed loop, one request after another.
bool pipelined(const Options& o) { return o.rate == 0 && o.mode == Mode::echo; }

}  // namespace

std::string to_json(const Result& r) {
    const Stats& s = r.stats;
    const Histogram& h = s.latency;
    const double d = r.duration_s > 0 ? r.duration_s : 1;
    const bool echo = r.options.protocol == Proto::echo || r.options.protocol == Proto::marker;
    const double msgs_per_s = r.rates_given ? r.msgs_per_s : static_cast<double>(s.messages) / d;
    const double mb_per_s = r.rates_given ? r.mb_per_s : static_cast<double>(s.bytes) / d / 1e6;
    const double achieved = r.rates_given ? r.achieved_rate : static_cast<double>(s.messages) / d;
    std::string out = fmt::format(
        "{{\"mode\": \"{}\", \"connections\": {}, \"size\": {}, \"pipeline\": {}, \"rate\": {}, "
        "\"threads\": {}, \"duration_s\": {:.3f}, \"messages\": {}, \"bytes\": {}, "
        "\"msgs_per_s\": {:.1f}, \"mb_per_s\": {:.3f}, \"errors\": {}, "
        "\"latency_us\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, "
        "\"max\": {}}}",
        to_string(r.options.mode), r.options.connections,
        echo ? std::to_string(r.options.size) : std::string("null"), r.options.pipeline,
        r.options.rate, r.threads, r.duration_s, s.messages, s.bytes, msgs_per_s, mb_per_s,
        // udp's contract counts unanswered datagrams as errors; TCP counts them apart only.
        r.options.mode == Mode::udp ? s.failures() : s.errors(), json_us(h, 0.5), json_us(h, 0.9),
        json_us(h, 0.99), json_us(h, 0.999), json_us(h, 1));
    out += fmt::format(
        ", \"mismatches\": {}, \"early_closes\": {}, \"connect_errors\": {}, \"timeouts\": {}, "
        "\"connections_made\": {}",
        s.mismatches, s.early_closes, s.connect_errors, s.timeouts, s.connections_made);
    out += fmt::format(", \"protocol\": \"{}\", \"requests\": {}, \"cpu_s\": {:.3f}",
                       to_string(r.options.protocol), s.requests(), r.cpu_s);
    if (r.options.protocol == Proto::http)
        out += fmt::format(
            ", \"status\": {{\"1xx\": {}, \"2xx\": {}, \"3xx\": {}, \"4xx\": {}, \"5xx\": {}}}",
            s.status[1], s.status[2], s.status[3], s.status[4], s.status[5]);
    if (r.options.rate > 0)
        out += fmt::format(", \"requested_rate\": {:.1f}, \"achieved_rate\": {:.1f}",
                           r.options.rate, achieved);
    out += fmt::format(", \"timeout_s\": {:g}, \"max_failures\": {:g}", r.options.timeout,
                       r.options.max_failures);
    if (r.merged_from) out += fmt::format(", \"merged_from\": {}", r.merged_from);
    if (!r.first_error.empty()) out += ", \"first_error\": " + json_string(r.first_error);
    out += ", \"histogram\": " + histogram_json(h);
    out += "}";
    return out;
}

std::string histogram_json(const Histogram& h) {
    std::string out = fmt::format(
        "{{\"schema_version\": {}, \"unit\": \"ns\", \"sub_bucket_bits\": {}, \"count\": {}, "
        "\"min\": {}, \"max\": {}, \"buckets\": [",
        histogram_schema_version, Histogram::sub_bits, h.count(),
        h.count() ? std::to_string(h.min()) : "null", h.count() ? std::to_string(h.max()) : "null");
    bool first = true;
    for (std::size_t i = 0; i < Histogram::bucket_count; ++i) {
        const std::uint64_t n = h.count_at(i);
        if (n == 0) continue;
        fmt::format_to(std::back_inserter(out), "{}[{}, {}]", first ? "" : ", ",
                       Histogram::bucket_low(i), n);
        first = false;
    }
    return out + "]}";
}

std::string to_summary(const Result& r) {
    const Stats& s = r.stats;
    const Histogram& h = s.latency;
    const double d = r.duration_s > 0 ? r.duration_s : 1;
    const Options& o = r.options;
    std::string what =
        o.protocol == Proto::echo ? fmt::format("{} mode, {} B messages", to_string(o.mode), o.size)
        : o.protocol == Proto::marker ? fmt::format("marker protocol, {} B messages", o.size)
                                      : fmt::format("{} protocol", to_string(o.protocol));
    std::string out = fmt::format(
        "aioring-load: {} to {}, {} connections ({} made), {}{}, "
        "{} thread{}\n",
        what, host_port(o.host, o.port), r.options.connections, s.connections_made,
        pipelined(o) ? fmt::format("pipeline {}, ", o.pipeline) : std::string(),
        r.options.rate > 0 ? fmt::format("open loop at {:g} msg/s", r.options.rate)
                           : std::string("closed loop"),
        r.threads, r.threads == 1 ? "" : "s");
    out += fmt::format("  {:.2f} s measured: {} messages, {:.0f} msg/s, {:.2f} MB/s\n",
                       r.duration_s, s.messages, static_cast<double>(s.messages) / d,
                       static_cast<double>(s.bytes) / d / 1e6);
    if (h.count() == 0)
        out += "  latency (us): no replies measured\n";
    else
        out += fmt::format(
            "  latency (us): p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  p99.9 {:.1f}  max {:.1f}\n",
            us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.9)),
            us(h.value_at_quantile(0.99)), us(h.value_at_quantile(0.999)), us(h.max()));
    if (r.options.latency && h.count() > 0) {
        out += "  latency spectrum (us):\n";
        for (auto [name, q] : {std::pair{"p50", 0.5},
                               {"p75", 0.75},
                               {"p90", 0.9},
                               {"p99", 0.99},
                               {"p99.9", 0.999},
                               {"p99.99", 0.9999},
                               {"p99.999", 0.99999}})
            out += fmt::format("    {:<8} {:>12.1f}\n", name, us(h.value_at_quantile(q)));
        out += fmt::format("    {:<8} {:>12.1f}\n", "max", us(h.max()));
        out += fmt::format("    {:<8} {:>12.1f}  ({} samples, each within 1% of its bucket)\n",
                           "mean", h.mean() / 1000.0, h.count());
        // HdrHistogram's percentile distribution: ticks halving the distance to 100%.
        out += "  distribution:\n      value (us)   percentile  total count  1/(1-percentile)\n";
        for (int k = 1; k <= 24; ++k) {
            const double q = 1.0 - std::ldexp(1.0, -k);
            const std::uint64_t v = h.value_at_quantile(q);
            out += fmt::format("    {:>12.1f}   {:>10.6f}  {:>11}  {:>16.2f}\n", us(v), q,
                               h.count_up_to(v), 1.0 / (1.0 - q));
            if (h.count_up_to(v) >= h.count() ||
                std::ldexp(1.0, k) > static_cast<double>(h.count()))
                break;
        }
        out += fmt::format("    {:>12.1f}   {:>10.6f}  {:>11}\n", us(h.max()), 1.0, h.count());
    }
    if (r.options.rate > 0)
        out += fmt::format("  rate: requested {:g}/s, achieved {:.0f}/s\n", r.options.rate,
                           static_cast<double>(s.messages) / d);
    out += fmt::format("  timeouts: {} (of {} requests, --timeout {:g} s)\n", s.timeouts,
                       s.requests(), r.options.timeout);
    out += fmt::format("  errors: {} (mismatches {}, early closes {}, connection errors {})\n",
                       s.errors(), s.mismatches, s.early_closes, s.connect_errors);
    if (o.protocol == Proto::http) {
        out += fmt::format("  status: 2xx {}, 3xx {}, 4xx {}, 5xx {}", s.status[2], s.status[3],
                           s.status[4], s.status[5]);
        const std::uint64_t non2xx = s.status[1] + s.status[3] + s.status[4] + s.status[5];
        out += non2xx ? fmt::format(" ({} non-2xx replies)\n", non2xx) : "\n";
    }
    if (!r.first_error.empty()) out += "  first error: " + r.first_error + "\n";
    return out;
}

Verdict judge(const Result& r) {
    Verdict v;
    const Stats& s = r.stats;
    const double d = r.duration_s > 0 ? r.duration_s : 1;
    if (s.messages == 0) {
        v.exit_code = 1;
        v.reason = fmt::format("no request got a reply ({} timed out, {} errors{}{})", s.timeouts,
                               s.errors(), r.first_error.empty() ? "" : ": ", r.first_error);
    } else if (static_cast<double>(s.failures()) >
               r.options.max_failures *
                   static_cast<double>(std::max<std::uint64_t>(1, s.requests()))) {
        v.exit_code = 1;
        v.reason = fmt::format(
            "{} failures ({} timeouts, {} errors) in {} requests, more than --max-failures {:g}",
            s.failures(), s.timeouts, s.errors(), s.requests(), r.options.max_failures);
    }
    if (r.options.rate > 0) {
        const double achieved =
            r.rates_given ? r.achieved_rate : static_cast<double>(s.messages) / d;
        if (achieved < 0.95 * r.options.rate) {
            std::string w =
                fmt::format("warning: achieved {:.0f} requests/s, {:.0f}% of the requested {:g}",
                            achieved, 100 * achieved / r.options.rate, r.options.rate);
            // wrk2's question: was it the server, or the load tool itself?
            const double busy = r.cpu_s / (d * r.threads);
            if (busy > 0.9)
                w += fmt::format(
                    " (the load tool itself was busy {:.0f}% of its threads' time: add --threads)",
                    100 * busy);
            v.warnings.push_back(std::move(w));
        }
    }
    return v;
}

}  // namespace aioring::load
