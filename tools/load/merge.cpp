// SPDX-License-Identifier: Apache-2.0
// Reads aioring-load's JSON results back (nlohmann-json) and merges them exactly: the
// histograms bucket by bucket, so that the percentiles are those of all the samples together.
#include "merge.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace aioring::load {

namespace {

using nlohmann::json;

std::uint64_t count_of(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return 0;
    return it->get<std::uint64_t>();
}

double number_of(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return 0;
    return it->get<double>();
}

const char* merge_usage =
    "usage: aioring-load merge FILE...\n"
    "  Merges the --json results of several runs (one per host) into one result of the same\n"
    "  shape: counts summed, rates added, histograms merged bucket by bucket, percentiles from\n"
    "  the merged histogram. Exit 1 if a file is not a result, or as a run would (no reply,\n"
    "  failures over the max-failures the runs had).\n";

}  // namespace

bool read_result(const std::string& text, Result& r, std::string& error) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        error = "not JSON (" + std::string(e.what()) + ")";
        return false;
    }
    try {
        if (!j.is_object() || !j.contains("messages") || !j.contains("latency_us")) {
            error = "not an aioring-load --json result";
            return false;
        }
        const auto hist = j.find("histogram");
        if (hist == j.end()) {
            error = "no \"histogram\" (results to merge come from aioring-load --json)";
            return false;
        }
        if (count_of(*hist, "schema_version") != histogram_schema_version ||
            count_of(*hist, "sub_bucket_bits") != Histogram::sub_bits) {
            error = "a histogram of another schema (this merge reads schema_version " +
                    std::to_string(histogram_schema_version) + ")";
            return false;
        }
        Options& o = r.options;
        const std::string mode = j.value("mode", "echo");
        o.mode = mode == "stream" ? Mode::stream : mode == "udp" ? Mode::udp : Mode::echo;
        const std::string proto = j.value("protocol", "echo");
        o.protocol = proto == "framed"   ? Proto::framed
                     : proto == "http"   ? Proto::http
                     : proto == "marker" ? Proto::marker
                                         : Proto::echo;
        o.connections = static_cast<unsigned>(count_of(j, "connections"));
        o.size = count_of(j, "size");
        o.pipeline = static_cast<unsigned>(count_of(j, "pipeline"));
        o.rate = number_of(j, "rate");
        o.timeout = j.contains("timeout_s") ? number_of(j, "timeout_s") : o.timeout;
        o.max_failures = j.contains("max_failures") ? number_of(j, "max_failures") : o.max_failures;
        r.threads = static_cast<unsigned>(count_of(j, "threads"));
        r.duration_s = number_of(j, "duration_s");
        r.cpu_s = number_of(j, "cpu_s");
        r.msgs_per_s = number_of(j, "msgs_per_s");
        r.mb_per_s = number_of(j, "mb_per_s");
        r.achieved_rate = number_of(j, "achieved_rate");
        r.rates_given = true;
        r.first_error = j.value("first_error", "");
        Stats& s = r.stats;
        s.messages = count_of(j, "messages");
        s.bytes = count_of(j, "bytes");
        s.mismatches = count_of(j, "mismatches");
        s.early_closes = count_of(j, "early_closes");
        s.connect_errors = count_of(j, "connect_errors");
        s.timeouts = count_of(j, "timeouts");
        s.connections_made = count_of(j, "connections_made");
        if (const auto st = j.find("status"); st != j.end())
            for (int c = 1; c <= 5; ++c)
                s.status[static_cast<std::size_t>(c)] =
                    count_of(*st, (std::to_string(c) + "xx").c_str());
        for (const json& b : hist->at("buckets")) {
            const std::uint64_t low = b.at(0).get<std::uint64_t>(),
                                n = b.at(1).get<std::uint64_t>();
            const std::size_t i = Histogram::index_of(low);
            if (low > Histogram::max_trackable || Histogram::bucket_low(i) != low) {
                error = "histogram bucket " + std::to_string(low) + " is not a bucket's low bound";
                return false;
            }
            s.latency.add_to_bucket(i, n);
        }
        if (s.latency.count() != count_of(*hist, "count")) {
            error = "histogram buckets do not add up to its count";
            return false;
        }
        if (s.latency.count())
            s.latency.set_min_max(count_of(*hist, "min"), count_of(*hist, "max"));
    } catch (const json::exception& e) {
        error = std::string("a value of the wrong type (") + e.what() + ")";
        return false;
    }
    return true;
}

bool merge_results(const std::vector<std::pair<std::string, Result>>& parts, Result& out,
                   std::string& error) {
    if (parts.empty()) {
        error = "nothing to merge";
        return false;
    }
    out = parts[0].second;
    const Options& first = parts[0].second.options;
    for (std::size_t k = 1; k < parts.size(); ++k) {
        const auto& [name, r] = parts[k];
        if (r.options.protocol != first.protocol || r.options.mode != first.mode) {
            error = name + ": a " + to_string(r.options.protocol) + "/" +
                    to_string(r.options.mode) + " run, not " + to_string(first.protocol) + "/" +
                    to_string(first.mode) + " like " + parts[0].first;
            return false;
        }
        out.options.connections += r.options.connections;
        out.options.rate += r.options.rate;
        out.options.max_failures = std::min(out.options.max_failures, r.options.max_failures);
        out.threads += r.threads;
        out.duration_s = std::max(out.duration_s, r.duration_s);
        out.cpu_s += r.cpu_s;
        out.msgs_per_s += r.msgs_per_s;
        out.mb_per_s += r.mb_per_s;
        out.achieved_rate += r.achieved_rate;
        out.stats.merge(r.stats);
        if (out.first_error.empty()) out.first_error = r.first_error;
    }
    out.merged_from = parts.size();
    return true;
}

int merge_main(const std::vector<std::string>& args) {
    if (args.empty()) {
        std::fprintf(stderr, "aioring-load: merge needs the files to merge\n%s", merge_usage);
        return 2;
    }
    std::vector<std::pair<std::string, Result>> parts;
    for (const std::string& file : args) {
        if (file == "--help" || file == "-h") {
            std::fputs(merge_usage, stdout);
            return 0;
        }
        if (file.size() > 1 && file[0] == '-') {
            std::fprintf(stderr, "aioring-load: unknown option '%s' for merge\n%s", file.c_str(),
                         merge_usage);
            return 2;
        }
        std::ifstream in(file, std::ios::binary);
        if (!in) {
            std::fprintf(stderr, "aioring-load: cannot read %s: %s\n", file.c_str(),
                         std::strerror(errno));
            return 1;
        }
        std::stringstream text;
        text << in.rdbuf();
        Result r;
        std::string error;
        if (!read_result(text.str(), r, error)) {
            std::fprintf(stderr, "aioring-load: %s: %s\n", file.c_str(), error.c_str());
            return 1;
        }
        parts.emplace_back(file, std::move(r));
    }
    Result merged;
    std::string error;
    if (!merge_results(parts, merged, error)) {
        std::fprintf(stderr, "aioring-load: %s\n", error.c_str());
        return 1;
    }
    std::printf("%s\n", to_json(merged).c_str());
    std::fflush(stdout);
    const Verdict v = judge(merged);
    for (const std::string& w : v.warnings) std::fprintf(stderr, "aioring-load: %s\n", w.c_str());
    if (v.exit_code != 0) std::fprintf(stderr, "aioring-load: %s\n", v.reason.c_str());
    return v.exit_code;
}

}  // namespace aioring::load
