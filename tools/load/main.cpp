// SPDX-License-Identifier: Apache-2.0
// aioring-load: a load generator for TCP and UDP servers (echo, framed, HTTP, marker), on aioring.
// docs/aioring-load.md is its interface: flags, JSON keys, exit codes; `merge` is a subcommand.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "engine.hpp"
#include "merge.hpp"
#include "options.hpp"
#include "result.hpp"

using namespace aioring::load;

namespace {
std::atomic<bool> interrupted{false};
}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && std::string(argv[1]) == "merge")
        return merge_main(std::vector<std::string>(argv + 2, argv + argc));
    ParseResult p = parse_options(std::vector<std::string>(argv + 1, argv + argc));
    if (p.status == ParseResult::Status::version) {
        std::printf("%s\n", version());
        return 0;
    }
    if (p.status == ParseResult::Status::help) {
        std::fputs(usage(), stdout);
        return 0;
    }
    if (p.status == ParseResult::Status::error) {
        std::fprintf(stderr, "aioring-load: %s\n%s", p.error.c_str(), usage());
        return 2;
    }
    const Options& o = p.options;
    const bool progress =
        !o.json ? (o.progress || (!o.no_progress && ::isatty(2))) : (o.progress && !o.no_progress);
    // Ctrl-C (or SIGTERM) ends the run early with the summary of what was measured; a second
    // one kills as usual.
    struct sigaction sa {};
    sa.sa_handler = [](int) { interrupted = true; };
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    Outcome out = run_load(o, progress ? stderr : nullptr, &interrupted);
    if (out.fatal) {
        std::fprintf(stderr, "aioring-load: %s\n", out.cause.c_str());
        return 1;
    }
    if (out.no_connection) {
        std::fprintf(stderr, "aioring-load: cannot connect to %s: %s\n",
                     host_port(o.host, o.port).c_str(), out.cause.c_str());
        return 1;
    }
    if (o.json)
        std::printf("%s\n", to_json(out.result).c_str());
    else
        std::fputs(to_summary(out.result).c_str(), stdout);
    std::fflush(stdout);
    const Verdict v = judge(out.result);
    for (const std::string& w : v.warnings) std::fprintf(stderr, "aioring-load: %s\n", w.c_str());
    if (v.exit_code != 0) std::fprintf(stderr, "aioring-load: %s\n", v.reason.c_str());
    return v.exit_code;
}
