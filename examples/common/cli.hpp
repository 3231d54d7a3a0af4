// Command-line handling shared by the examples and tools, as docs/cli.md describes: --help prints
// the usage on stdout (exit 0); an unknown flag or a bad value prints one line and the usage on
// stderr (exit 2); output is flushed per line.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace cli {

class Args {
public:
    // `usage` is the full usage text; `flags` maps each --name to its default ("" for none);
    // `switches` are flags without a value.
    Args(int argc, char** argv, std::string usage, std::map<std::string, std::string> flags,
         std::vector<std::string> switches = {}, bool stop_at_positional = false)
        : usage_(std::move(usage)), values_(std::move(flags)) {
        std::setvbuf(stdout, nullptr, _IOLBF, 0);
        for (auto& s : switches) switches_[s] = false;
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "--help" || a == "-h") {
                std::fputs(usage_.c_str(), stdout);
                std::exit(0);
            }
            if (stop_at_positional && (a.size() < 2 || a.compare(0, 2, "--") != 0)) {
                for (; i < argc; ++i) positional_.push_back(argv[i]);
                break;
            }
            if (a == "--") {
                for (++i; i < argc; ++i) positional_.push_back(argv[i]);
                break;
            }
            if (a.size() < 3 || a.compare(0, 2, "--") != 0) fail("unexpected argument '" + a + "'");
            std::string name = a.substr(2), value;
            bool has_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
                has_value = true;
            }
            if (auto s = switches_.find(name); s != switches_.end()) {
                if (has_value) fail("--" + name + " takes no value");
                s->second = true;
                continue;
            }
            auto it = values_.find(name);
            if (it == values_.end()) fail("unknown option '--" + name + "'");
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
            fail("bad value for --" + name + ": '" + v + "' (expected an integer from " +
                 std::to_string(lo) + " to " + std::to_string(hi) + ")");
        return n;
    }
    double number(const std::string& name, double lo, double hi) const {
        const std::string& v = values_.at(name);
        char* end = nullptr;
        errno = 0;
        double n = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || errno != 0 || !(n >= lo && n <= hi))
            fail("bad value for --" + name + ": '" + v + "'");
        return n;
    }
    std::uint16_t port(const std::string& name = "port") const {
        return static_cast<std::uint16_t>(integer(name, 0, 65535));
    }

    [[noreturn]] void fail(const std::string& message) const {
        std::fprintf(stderr, "error: %s\n%s", message.c_str(), usage_.c_str());
        std::exit(2);
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

// Prints "Data received: 'TEXT'"-style reprs: the bytes as they came, between single quotes.
inline std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace cli
