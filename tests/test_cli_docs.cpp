// SPDX-License-Identifier: Apache-2.0
// docs/cli.md against the programs: every example has a section, and every flag a section
// lists appears in that program's --help (so the reference and the programs stay in step).
#include <dirent.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "process.hpp"
#include "support.hpp"

using namespace testing;

namespace {

// "### NAME" sections of docs/cli.md, each with the flags (--word) written in it.
std::map<std::string, std::set<std::string>> documented_flags() {
    std::ifstream in(std::string(AIORING_SOURCE_DIR) + "/docs/cli.md");
    REQUIRE(in);
    std::map<std::string, std::set<std::string>> out;
    std::string line, current;
    const std::regex flag("--[a-z][a-z-]*");
    while (std::getline(in, line)) {
        if (line.rfind("### ", 0) == 0) {
            current = line.substr(4);
            out[current];
        } else if (line.rfind("## ", 0) == 0) {
            current.clear();
        } else if (!current.empty()) {
            for (auto it = std::sregex_iterator(line.begin(), line.end(), flag);
                 it != std::sregex_iterator(); ++it)
                out[current].insert(it->str());
        }
    }
    return out;
}

std::vector<std::string> example_programs() {
    std::vector<std::string> names;
    DIR* d = ::opendir((std::string(AIORING_SOURCE_DIR) + "/examples").c_str());
    REQUIRE(d != nullptr);
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 4 && n.substr(n.size() - 4) == ".cpp")
            names.push_back(n.substr(0, n.size() - 4));
    }
    ::closedir(d);
    return names;
}

}  // namespace

TEST_SUITE("command-line reference") {
    TEST_CASE("docs/cli.md has a section for every example program and for aioring-load") {
        const auto docs = documented_flags();
        for (const auto& name : example_programs()) {
            INFO("program: ", name);
            CHECK(docs.count(name) == 1);
        }
        CHECK(docs.count("aioring-load") == 1);
    }

    TEST_CASE("every flag docs/cli.md lists for an example appears in its --help") {
        const auto docs = documented_flags();
        REQUIRE(docs.size() > 10);
        int checked = 0;
        for (const auto& [name, flags] : docs) {
            if (name == "aioring-load") continue;  // docs/aioring-load.md has its own reference
            INFO("program: ", name);
            testing::Process p({example(name), "--help"});
            REQUIRE(p.wait() == 0);
            for (const auto& f : flags) {
                INFO("flag: ", f);
                CHECK(p.out.find(f) != std::string::npos);
                ++checked;
            }
        }
        CHECK(checked > 20);
    }
}
