// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the examples' command-line parser (examples/common/cli.hpp) fed arbitrary
// argument vectors (NUL-separated in the input) with echo_server's and subprocess_pipe's flag
// sets. It must end in a value or a usage error (never a crash or an uncaught exception), and
// an error message stays short however long the argument it names.
#define AIORING_CLI_THROW_ON_EXIT
#include "cli.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "cli fuzzer: %s\n", what);
    std::abort();
}
#define EXPECT(cond)                  \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

void parse(std::vector<std::string>& strings, bool subprocess_style) {
    std::vector<char*> argv;
    for (auto& s : strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    const int argc = static_cast<int>(argv.size()) - 1;
    try {
        if (subprocess_style) {
            cli::Args args(argc, argv.data(), "usage: subprocess_pipe [--shell] CMD [ARG...]\n", {},
                           {"shell"}, true);
            // Everything from the first non-option on is CMD, byte for byte.
            for (const auto& p : args.positional()) EXPECT(p.size() <= 4096);
            (void)args.flag("shell");
        } else {
            cli::Args args(argc, argv.data(), "usage: echo_server [--port PORT] ...\n",
                           {{"api", "protocol"},
                            {"host", "127.0.0.1"},
                            {"port", "8888"},
                            {"threads", "1"},
                            {"rate", "0"}},
                           {"quiet"});
            EXPECT(args.positional().empty());  // a stray argument is an error, after -- too
            const long long port = args.port();
            EXPECT(port >= 0 && port <= 65535);
            const long long threads = args.integer("threads", 1, 256);
            EXPECT(threads >= 1 && threads <= 256);
            const double rate = args.number("rate", 0, 1e9);
            EXPECT(rate >= 0 && rate <= 1e9);
            (void)args.flag("quiet");
            (void)args.str("host");
        }
    } catch (const cli::Exit& e) {
        EXPECT(e.code == 0 || e.code == 2);
        if (e.code == 2) {
            EXPECT(e.message.rfind("error: ", 0) == 0);
            EXPECT(e.message.find('\n') == std::string::npos);
            EXPECT(e.message.size() < 256);  // values are cut to 64 bytes
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const bool subprocess_style = data[0] & 1;
    std::vector<std::string> strings = {"prog"};
    std::string cur;
    for (std::size_t i = 1; i < size; ++i) {
        if (data[i] == 0) {
            strings.push_back(cur);
            cur.clear();
        } else {
            cur.push_back(static_cast<char>(data[i]));
        }
    }
    if (size > 1) strings.push_back(cur);
    parse(strings, subprocess_style);
    return 0;
}
