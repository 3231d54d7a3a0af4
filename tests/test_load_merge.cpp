// SPDX-License-Identifier: Apache-2.0
// `aioring-load merge`: results read back exactly, merged bucket by bucket, and the files a
// user could hand it by mistake refused with one line.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "merge.hpp"
#include "result.hpp"

using namespace aioring::load;

namespace {

Result sample_run(std::uint64_t seed, std::uint64_t n) {
    Result r;
    r.options.connections = 10;
    r.options.rate = 1000;
    r.threads = 2;
    r.duration_s = 2;
    r.cpu_s = 0.5;
    std::mt19937_64 rng(seed);
    std::lognormal_distribution<double> lat(11, 1);  // around 60 us, a long tail
    for (std::uint64_t i = 0; i < n; ++i)
        r.stats.latency.record(static_cast<std::uint64_t>(lat(rng)));
    r.stats.messages = n;
    r.stats.bytes = n * 64;
    r.stats.timeouts = seed;
    r.stats.connections_made = 10;
    return r;
}

struct Run {
    int status = -1;
    std::string out, err;
};
Run run_merge(const std::string& args) {
    const std::string errfile = "/tmp/aioring-load-merge-" + std::to_string(::getpid()) + ".err";
    FILE* p =
        ::popen((std::string(AIORING_LOAD_BIN) + " merge " + args + " 2>" + errfile).c_str(), "r");
    REQUIRE(p != nullptr);
    Run r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    std::ifstream e(errfile);
    r.err.assign(std::istreambuf_iterator<char>(e), {});
    std::remove(errfile.c_str());
    return r;
}

}  // namespace

TEST_SUITE("load merge") {
    TEST_CASE("a result read back from its JSON prints the same JSON") {
        Result r = sample_run(3, 5000);
        r.options.protocol = Proto::http;
        r.stats.status[2] = 4000;
        r.stats.status[5] = 1000;
        r.first_error = "the server closed the connection";
        const std::string j = to_json(r);
        Result back;
        std::string error;
        REQUIRE(read_result(j, back, error));
        CHECK(to_json(back) == j);
        CHECK(back.stats.latency.count() == 5000);
        CHECK(back.stats.latency.value_at_quantile(0.999) ==
              r.stats.latency.value_at_quantile(0.999));
    }

    TEST_CASE("merged: counts summed, rates added, percentiles of the merged histogram") {
        Result a = sample_run(1, 20000), b = sample_run(2, 30000);
        b.duration_s = 2.1;
        std::string error;
        Result ra, rb, m;
        REQUIRE(read_result(to_json(a), ra, error));
        REQUIRE(read_result(to_json(b), rb, error));
        REQUIRE(merge_results({{"a.json", ra}, {"b.json", rb}}, m, error));
        CHECK(m.stats.messages == 50000);
        CHECK(m.stats.bytes == 50000 * 64);
        CHECK(m.stats.timeouts == 3);
        CHECK(m.options.connections == 20);
        CHECK(m.options.rate == 2000);
        CHECK(m.threads == 4);
        CHECK(m.duration_s == 2.1);
        CHECK(m.msgs_per_s == doctest::Approx(20000 / 2.0 + 30000 / 2.1).epsilon(0.001));
        Histogram all = a.stats.latency;
        all.merge(b.stats.latency);
        for (double q : {0.5, 0.9, 0.99, 0.999, 0.9999})
            CHECK(m.stats.latency.value_at_quantile(q) == all.value_at_quantile(q));
        CHECK(m.stats.latency.max() == all.max());
        CHECK(m.stats.latency.min() == all.min());
        const std::string j = to_json(m);
        CHECK(j.find("\"merged_from\": 2") != std::string::npos);
        CHECK(j.find("\"requested_rate\": 2000.0") != std::string::npos);
    }

    TEST_CASE("the merge subcommand: files in, one JSON out; bad files one line, exit 1") {
        const std::string dir = "/tmp/aioring-load-merge-" + std::to_string(::getpid());
        REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
        std::ofstream(dir + "/a.json") << to_json(sample_run(1, 1000)) << "\n";
        std::ofstream(dir + "/b.json") << to_json(sample_run(2, 2000)) << "\n";
        std::ofstream(dir + "/junk.json") << "{\"mode\": ";
        std::ofstream(dir + "/other.json") << "{\"hello\": 1}";
        Result udp = sample_run(1, 10);
        udp.options.mode = Mode::udp;
        std::ofstream(dir + "/udp.json") << to_json(udp);

        Run ok = run_merge(dir + "/a.json " + dir + "/b.json");
        INFO(ok.err);
        CHECK(ok.status == 0);
        CHECK(ok.out.find("\"messages\": 3000,") != std::string::npos);
        CHECK(std::count(ok.out.begin(), ok.out.end(), '\n') == 1);
        for (const char* bad : {"junk.json", "other.json", "missing.json"}) {
            Run r = run_merge(dir + "/a.json " + dir + "/" + bad);
            INFO(bad << ": " << r.err);
            CHECK(r.status == 1);
            CHECK(r.err.find(bad) != std::string::npos);
            CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
            CHECK(r.out.empty());
        }
        Run mixed = run_merge(dir + "/a.json " + dir + "/udp.json");
        CHECK(mixed.status == 1);
        CHECK(mixed.err.find("udp") != std::string::npos);
        CHECK(run_merge("").status == 2);
        CHECK(run_merge("--bogus").status == 2);
        Run help = run_merge("--help");
        CHECK(help.status == 0);
        CHECK(help.out.find("usage: aioring-load merge") != std::string::npos);
        std::system(("rm -rf " + dir).c_str());
    }
}
