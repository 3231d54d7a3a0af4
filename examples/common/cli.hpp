// SPDX-License-Identifier: Apache-2.0
// Command-line handling shared by the examples (docs/cli.md is their reference): --help prints
// the usage on stdout (exit 0), --version prints `NAME aioring VERSION` (exit 0); an unknown
// flag, a bad value or a stray argument (also after `--`) prints one line and the usage on
// stderr (exit 2), with any value it repeats cut to a sane length; output is flushed per line.
// guarded_main turns an exception that would escape main into one line on stderr and exit 1.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#ifndef AIORING_VERSION
#define AIORING_VERSION "unknown"
#endif

namespace cli {

// A value as an error message repeats it: on one line (control characters escaped as \n, \t,
// \xNN) and at most about `max` bytes, with the full length after a cut.
inline std::string clip(std::string_view v, std::size_t max = 64) {
    std::string out;
    for (const char ch : v) {
        if (out.size() >= max) return out + "... (" + std::to_string(v.size()) + " bytes)";
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
    return out;
}

// The program's name: the first word after "usage: " in its usage text, else argv[0]'s base name.
inline std::string program_name(const std::string& usage, const char* argv0) {
    const std::string prefix = "usage: ";
    if (usage.compare(0, prefix.size(), prefix) == 0) {
        const auto end = usage.find_first_of(" \n", prefix.size());
        return usage.substr(prefix.size(), end - prefix.size());
    }
    std::string_view a = argv0 ? argv0 : "";
    if (auto slash = a.rfind('/'); slash != std::string_view::npos) a.remove_prefix(slash + 1);
    return std::string(a);
}

// Where the parser ends the program (--help, --version, a usage error): std::exit, or, when
// AIORING_CLI_THROW_ON_EXIT is defined (the fuzzer), an Exit exception and nothing printed.
struct Exit {
    int code;
    std::string message;
};
[[noreturn]] inline void exit_program(int code, [[maybe_unused]] std::string message = {}) {
#ifdef AIORING_CLI_THROW_ON_EXIT
    throw Exit{code, std::move(message)};
#else
    std::exit(code);
#endif
}

class Args {
public:
    // `usage` is the full usage text; `flags` maps each --name to its default ("" for none);
    // `switches` are flags without a value. With `stop_at_positional`, the first argument that
    // is not an option (or everything after `--`) and all that follow are positional();
    // otherwise a positional argument is a usage error, after `--` too.
    Args(int argc, char** argv, std::string usage, std::map<std::string, std::string> flags,
         std::vector<std::string> switches = {}, bool stop_at_positional = false)
        : usage_(std::move(usage)), values_(std::move(flags)) {
        std::setvbuf(stdout, nullptr, _IOLBF, 0);
        for (auto& s : switches) switches_[s] = false;
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "--help" || a == "-h") {
#ifndef AIORING_CLI_THROW_ON_EXIT
                std::fputs(usage_.c_str(), stdout);
#endif
                exit_program(0, usage_);
            }
            if (a == "--version") {
                const std::string line =
                    program_name(usage_, argv[0]) + " aioring " + AIORING_VERSION + "\n";
#ifndef AIORING_CLI_THROW_ON_EXIT
                std::fputs(line.c_str(), stdout);
#endif
                exit_program(0, line);
            }
            if (stop_at_positional && (a.size() < 2 || a.compare(0, 2, "--") != 0)) {
                for (; i < argc; ++i) positional_.push_back(argv[i]);
                break;
            }
            if (a == "--") {
                if (!stop_at_positional && i + 1 < argc)
                    fail("unexpected argument '" + clip(argv[i + 1]) + "'");
                for (++i; i < argc; ++i) positional_.push_back(argv[i]);
                break;
            }
            if (a.size() < 3 || a.compare(0, 2, "--") != 0)
                fail("unexpected argument '" + clip(a) + "'");
            std::string name = a.substr(2), value;
            bool has_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
                has_value = true;
            }
            if (auto s = switches_.find(name); s != switches_.end()) {
                if (has_value) fail("--" + clip(name) + " takes no value");
                s->second = true;
                continue;
            }
            auto it = values_.find(name);
            if (it == values_.end()) fail("unknown option '--" + clip(name) + "'");
            if (!has_value) {
                if (i + 1 >= argc) fail("--" + name + " needs a value");
                value = argv[++i];
            }
            it->second = value;
            given_[name] = true;
        }
    }

    const std::string& str(const std::string& name) const { return values_.at(name); }
    bool given(const std::string& name) const { return given_.count(name) != 0; }
    bool flag(const std::string& name) const { return switches_.at(name); }
    const std::vector<std::string>& positional() const { return positional_; }

    // An integer in [lo, hi]; anything else is a usage error.
    long long integer(const std::string& name, long long lo, long long hi) const {
        const std::string& v = values_.at(name);
        char* end = nullptr;
        errno = 0;
        long long n = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || errno != 0 || n < lo || n > hi)
            fail("bad value for --" + name + ": '" + clip(v) + "' (expected an integer from " +
                 std::to_string(lo) + " to " + std::to_string(hi) + ")");
        return n;
    }
    double number(const std::string& name, double lo, double hi) const {
        const std::string& v = values_.at(name);
        char* end = nullptr;
        errno = 0;
        double n = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || errno != 0 || !(n >= lo && n <= hi))
            fail("bad value for --" + name + ": '" + clip(v) + "'");
        return n;
    }
    std::uint16_t port(const std::string& name = "port") const {
        return static_cast<std::uint16_t>(integer(name, 0, 65535));
    }

    [[noreturn]] void fail(const std::string& message) const {
#ifndef AIORING_CLI_THROW_ON_EXIT
        std::fprintf(stderr, "error: %s\n%s", message.c_str(), usage_.c_str());
#endif
        exit_program(2, "error: " + message);
    }

private:
    std::string usage_;
    std::map<std::string, std::string> values_;
    std::map<std::string, bool> switches_;
    std::map<std::string, bool> given_;
    std::vector<std::string> positional_;
};

// The words for an error, as docs/cli.md wants them on stderr ("Connection refused").
inline std::string cause(const std::exception& e) {
    if (auto* se = dynamic_cast<const std::system_error*>(&e)) return se->code().message();
    return e.what();
}

// Runs `body(argc, argv)` and returns its exit status; an exception that escapes it (no event
// loop at the fd limit, no signalfd, no thread) prints `NAME: CAUSE` on stderr and gives 1.
template <class F>
int guarded_main(const char* name, int argc, char** argv, F body) {
    try {
        return body(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, clip(e.what(), 300).c_str());
    } catch (...) {
        std::fprintf(stderr, "%s: unknown error\n", name);
    }
    return 1;
}

// Prints "Data received: 'TEXT'"-style reprs: the bytes as they came, between single quotes.
inline std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace cli
