// SPDX-License-Identifier: Apache-2.0
// aioring-load's pieces that need no network: the latency histogram's accuracy (against exact
// percentiles of random samples), its merging, and the command line's checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

#include "histogram.hpp"
#include "options.hpp"
#include "result.hpp"

using namespace aioring::load;

namespace {

std::uint64_t exact_quantile(std::vector<std::uint64_t> v, double q) {
    std::sort(v.begin(), v.end());
    std::size_t rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    rank = std::clamp<std::size_t>(rank, 1, v.size());
    return v[rank - 1];
}

double rel_error(std::uint64_t got, std::uint64_t want) {
    return std::abs(static_cast<double>(got) - static_cast<double>(want)) /
           static_cast<double>(want);
}

ParseResult parse(std::vector<std::string> a) { return parse_options(a); }

}  // namespace

TEST_SUITE("load histogram") {
    TEST_CASE("percentiles are within 1% of the exact percentiles, from 1 us to 60 s") {
        std::mt19937_64 rng(12345);
        // Log-uniform over the whole range, then a narrow cluster, then a two-mode mix.
        std::uniform_real_distribution<double> logu(std::log(1e3), std::log(60e9));
        std::normal_distribution<double> cluster(50e3, 3e3);
        for (int shape = 0; shape < 3; ++shape) {
            Histogram h;
            std::vector<std::uint64_t> samples;
            for (int i = 0; i < 100000; ++i) {
                double v = shape == 0   ? std::exp(logu(rng))
                           : shape == 1 ? std::max(1e3, cluster(rng))
                                        : (i % 10 == 0 ? 20e6 + cluster(rng) * 10
                                                       : std::max(1e3, cluster(rng)));
                auto ns = static_cast<std::uint64_t>(v);
                samples.push_back(ns);
                h.record(ns);
            }
            CHECK(h.count() == samples.size());
            for (double q : {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
                const std::uint64_t want = exact_quantile(samples, q);
                const std::uint64_t got = h.value_at_quantile(q);
                INFO("shape " << shape << " q " << q << " want " << want << " got " << got);
                CHECK(rel_error(got, want) <= 0.01);
            }
            CHECK(h.max() == *std::max_element(samples.begin(), samples.end()));
        }
    }

    TEST_CASE("every bucket is narrower than 1% of its lowest value above 100 ns") {
        for (std::uint64_t v : {100ull, 255ull, 256ull, 1000ull, 123456ull, 60'000'000'000ull}) {
            const std::size_t i = Histogram::index_of(v);
            CHECK(Histogram::bucket_low(i) <= v);
            CHECK(v < Histogram::bucket_low(i) + Histogram::bucket_width(i));
            CHECK(static_cast<double>(Histogram::bucket_width(i)) / static_cast<double>(v) <= 0.01);
        }
        CHECK(Histogram::index_of(Histogram::max_trackable) == Histogram::bucket_count - 1);
    }

    TEST_CASE("merged histograms answer as one that saw every sample") {
        Histogram a, b, all;
        for (std::uint64_t v = 1000; v < 200000; v += 37) {
            ((v / 37) % 2 ? a : b).record(v);
            all.record(v);
        }
        a.merge(b);
        CHECK(a.count() == all.count());
        for (double q : {0.5, 0.9, 0.99}) CHECK(a.value_at_quantile(q) == all.value_at_quantile(q));
        CHECK(a.max() == all.max());
        Histogram empty;
        CHECK(empty.value_at_quantile(0.99) == 0);
    }
}

TEST_SUITE("load options") {
    TEST_CASE("defaults follow the contract") {
        auto r = parse({"--port", "9000"});
        REQUIRE(r.status == ParseResult::Status::ok);
        const Options& o = r.options;
        CHECK(o.host == "127.0.0.1");
        CHECK(o.port == 9000);
        CHECK(o.mode == Mode::echo);
        CHECK(o.connections == 50);
        CHECK(o.size == 64);
        CHECK(o.pipeline == 1);
        CHECK(o.duration == 10);
        CHECK(o.warmup == 1);
        CHECK(o.rate == 0);
        CHECK(o.threads == 1);
        CHECK_FALSE(o.json);
    }

    TEST_CASE("values are taken as --flag value and --flag=value") {
        auto r = parse({"--port=9", "--mode", "stream", "--size=1024", "--rate", "2500.5", "--json",
                        "--threads", "2", "--connections=4"});
        REQUIRE(r.status == ParseResult::Status::ok);
        CHECK(r.options.mode == Mode::stream);
        CHECK(r.options.size == 1024);
        CHECK(r.options.rate == 2500.5);
        CHECK(r.options.json);
        CHECK(r.options.threads == 2);
    }

    TEST_CASE("docs/aioring-load.md shows exactly what --help prints, and documents every flag") {
        std::ifstream f(AIORING_LOAD_DOC);
        REQUIRE(f.good());
        const std::string doc((std::istreambuf_iterator<char>(f)),
                              std::istreambuf_iterator<char>());
        CHECK(doc.find(std::string("```text\n") + usage() + "```") != std::string::npos);
        for (const char* proto :
             {"echo|framed|http|marker", "### echo", "### framed", "### http", "### marker"})
            CHECK_MESSAGE((std::string(usage()) + doc).find(proto) != std::string::npos, proto);
        // Every flag the parser knows is in the usage (and so in the reference).
        for (const char* flag : {"--port",
                                 "--host",
                                 "--protocol",
                                 "--mode",
                                 "--connections",
                                 "--size",
                                 "--pipeline",
                                 "--duration",
                                 "--warmup",
                                 "--rate",
                                 "--threads",
                                 "--timeout",
                                 "--max-failures",
                                 "--json",
                                 "--latency",
                                 "--progress",
                                 "--no-progress",
                                 "--connect-timeout",
                                 "--connect-rate",
                                 "--requests-per-connection",
                                 "--start-at",
                                 "--version",
                                 "--tls",
                                 "--cafile",
                                 "--server-hostname",
                                 "--request",
                                 "--request-file",
                                 "--reply-size",
                                 "--reply-delimiter",
                                 "--reply-length-prefix",
                                 "--expect-prefix",
                                 "--url-path",
                                 "--method",
                                 "--header",
                                 "--body",
                                 "--interval-log"}) {
            CHECK_MESSAGE(std::string(usage()).find(flag) != std::string::npos, flag);
            if (std::string(flag) != "--help" && std::string(flag) != "--version") {
                auto r = parse({"--port", "9", flag});  // known: at worst "needs a value"
                CHECK_MESSAGE(r.error.find("unknown option") == std::string::npos, flag);
            }
        }
    }

    TEST_CASE("durations take a unit suffix; a plain number is seconds") {
        auto r =
            parse({"--port", "9", "--duration", "500ms", "--warmup", "2m", "--timeout", "1.5"});
        REQUIRE(r.status == ParseResult::Status::ok);
        CHECK(r.options.duration == doctest::Approx(0.5));
        CHECK(r.options.warmup == 120);
        CHECK(r.options.timeout == 1.5);
        CHECK(parse({"--port", "9", "--duration", "1h"}).options.duration == 3600);
        CHECK(parse({"--port", "9", "--duration", "10s"}).options.duration == 10);
        CHECK(parse({"--port", "9"}).options.timeout == 2);
        CHECK(parse({"--port", "9"}).options.max_failures == 0.5);
        for (const char* bad : {"10x", "s", "10 s", "-1s", "0ms", "ms10"})
            CHECK_MESSAGE(
                parse({"--port", "9", "--duration", bad}).status == ParseResult::Status::error,
                bad);
        CHECK(parse({"--port", "9", "--max-failures", "1.5"}).status == ParseResult::Status::error);
    }

    TEST_CASE("bad input is an error with a one-line message") {
        for (auto args :
             std::vector<std::vector<std::string>>{{"--port", "9", "--size", "0"},
                                                   {"--port", "9", "--connections", "0"},
                                                   {"--port", "9", "--mode", "http"},
                                                   {"--port", "9", "--duration", "ten"},
                                                   {"--port", "9", "--rate", "-1"},
                                                   {"--port", "9", "--pipeline", "1x"},
                                                   {"--port", "70000"},
                                                   {"--size", "64"},
                                                   {"--port", "9", "--bogus"},
                                                   {"--port", "9", "--tls", "--mode", "udp"},
                                                   {"--port"}}) {
            auto r = parse(args);
            INFO(args.back());
            CHECK(r.status == ParseResult::Status::error);
            CHECK_FALSE(r.error.empty());
            CHECK(r.error.find('\n') == std::string::npos);
        }
        CHECK(parse({"--help"}).status == ParseResult::Status::help);
    }
}

TEST_SUITE("load result") {
    TEST_CASE(
        "the JSON histogram lists every non-empty bucket by its low bound, with min and max") {
        Histogram h;
        for (std::uint64_t v : {5ull, 5ull, 300ull, 1'000'000ull}) h.record(v);
        const std::string j = histogram_json(h);
        CHECK(j ==
              "{\"schema_version\": 1, \"unit\": \"ns\", \"sub_bucket_bits\": 7, \"count\": 4, "
              "\"min\": 5, \"max\": 1000000, \"buckets\": [[5, 2], [300, 1], [" +
                  std::to_string(Histogram::bucket_low(Histogram::index_of(1'000'000))) + ", 1]]}");
        CHECK(histogram_json(Histogram())
                  .find("\"count\": 0, \"min\": null, \"max\": null, \"buckets\": []") !=
              std::string::npos);
        // Buckets read back by their low bound make the same histogram.
        Histogram back;
        back.add_to_bucket(Histogram::index_of(5), 2);
        back.add_to_bucket(Histogram::index_of(300), 1);
        back.add_to_bucket(
            Histogram::index_of(Histogram::bucket_low(Histogram::index_of(1'000'000))), 1);
        back.set_min_max(5, 1'000'000);
        CHECK(histogram_json(back) == j);
    }

    TEST_CASE("--latency adds the spectrum to the summary; without samples nothing is made up") {
        Result r;
        r.duration_s = 1;
        r.options.latency = true;
        for (std::uint64_t v = 1; v <= 100000; ++v) r.stats.latency.record(v * 1000);
        r.stats.messages = 100000;
        const std::string s = to_summary(r);
        for (const char* line :
             {"p50", "p75", "p90", "p99 ", "p99.9 ", "p99.99 ", "p99.999", "max"})
            CHECK_MESSAGE(s.find(std::string("    ") + line) != std::string::npos, line);
        // p99.999 of 1..100000 us is 99999 us, within the histogram's 1%.
        const auto at = s.find("p99.999");
        REQUIRE(at != std::string::npos);
        CHECK(std::strtod(s.c_str() + at + 7, nullptr) == doctest::Approx(99999).epsilon(0.01));
        // The HdrHistogram-style distribution: 0.5, 0.75, ... with the count at or below each.
        const auto dist = s.find("  distribution:");
        REQUIRE(dist != std::string::npos);
        const auto half = s.find("0.500000", dist);
        REQUIRE(half != std::string::npos);
        const double count_at_half = std::strtod(s.c_str() + half + 8, nullptr);
        CHECK(count_at_half == doctest::Approx(50000).epsilon(0.01));
        CHECK(s.find("0.750000", dist) != std::string::npos);
        CHECK(s.find("   1.000000       100000") != std::string::npos);
        Result empty;
        empty.options.latency = true;
        const std::string e = to_summary(empty);
        CHECK(e.find("no replies measured") != std::string::npos);
        CHECK(e.find("p99.999") == std::string::npos);
    }

    TEST_CASE("judge: nothing answered, or failures over --max-failures, is exit 1 with a reason") {
        Result r;
        r.duration_s = 1;
        r.stats.timeouts = 5;
        Verdict v = judge(r);
        CHECK(v.exit_code == 1);
        CHECK(v.reason.find("no request got a reply (5 timed out") == 0);
        r.stats.messages = 10;  // 5 of 15 failed: under the default half
        CHECK(judge(r).exit_code == 0);
        r.options.max_failures = 0.3;
        v = judge(r);
        CHECK(v.exit_code == 1);
        CHECK(v.reason.find("more than --max-failures 0.3") != std::string::npos);
        CHECK(v.reason.find('\n') == std::string::npos);
        r.stats.timeouts = 0;
        r.stats.mismatches = 5;  // errors count as failures too
        CHECK(judge(r).exit_code == 1);
    }

    TEST_CASE("judge: an open loop short of its rate warns") {
        Result r;
        r.duration_s = 2;
        r.options.rate = 100;
        r.stats.messages = 190;  // exactly 95%
        CHECK(judge(r).warnings.empty());
        r.stats.messages = 150;
        Verdict v = judge(r);
        REQUIRE(v.warnings.size() == 1);
        CHECK(v.warnings[0].find("achieved 75 requests/s, 75% of the requested 100") !=
              std::string::npos);
        CHECK(v.exit_code == 0);
    }

    TEST_CASE("the JSON object carries the contract's keys") {
        Result r;
        r.options.port = 1;
        r.duration_s = 2;
        r.stats.messages = 1000;
        r.stats.bytes = 64000;
        r.stats.latency.record(10'000);
        const std::string j = to_json(r);
        for (const char* key :
             {"\"mode\": \"echo\"", "\"connections\": 50", "\"size\": 64", "\"pipeline\": 1",
              "\"rate\": 0", "\"threads\": 1", "\"duration_s\": 2.000", "\"messages\": 1000",
              "\"bytes\": 64000", "\"msgs_per_s\": 500.0", "\"mb_per_s\": 0.032", "\"errors\": 0",
              "\"latency_us\": {\"p50\": 10.0", "\"p90\"", "\"p99\"", "\"p999\"", "\"max\": 10.0"})
            CHECK_MESSAGE(j.find(key) != std::string::npos, key);
        CHECK(j.front() == '{');
        CHECK(j.back() == '}');
        CHECK(j.find('\n') == std::string::npos);
    }
}
