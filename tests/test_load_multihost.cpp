// SPDX-License-Identifier: Apache-2.0
// Several hosts, simulated: a server network namespace joined by a veth pair to each of three
// client namespaces (created and removed here, addresses only inside them). One copy of
// aioring-load runs in each client namespace, all started together with --start-at; `merge`
// makes one result of their three, whose totals must equal what the server itself counted.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "process.hpp"

namespace {

int sh(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The namespaces and links of one test, removed (links go with their namespaces) on the way out.
struct Topology {
    std::string tag = std::to_string(::getpid());
    std::string server = "alsrv" + tag;
    std::vector<std::string> clients;
    bool ok = false;
    std::string why;

    explicit Topology(int n) {
        if (::geteuid() != 0) {
            why = "not root";
            return;
        }
        if (sh("ip netns list >/dev/null 2>&1") != 0) {
            why = "ip netns is not available (iproute2)";
            return;
        }
        if (sh("ip netns add " + server + " 2>/dev/null") != 0) {
            why = "cannot create a network namespace here";
            return;
        }
        for (int k = 0; k < n; ++k) {
            const std::string c = "alc" + std::to_string(k) + "-" + tag;
            clients.push_back(c);
            const std::string s_if = "als" + std::to_string(k) + tag,
                              c_if = "alc" + std::to_string(k) + tag;
            const std::string net = "10.213." + std::to_string(k) + ".";
            const std::string cmds =
                "ip netns add " + c + " && ip -n " + server + " link add " + s_if +
                " type veth peer name " + c_if + " netns " + c + " && ip -n " + server +
                " addr add " + net + "1/30 dev " + s_if + " && ip -n " + server + " link set " +
                s_if + " up && ip -n " + c + " addr add " + net + "2/30 dev " + c_if +
                " && ip -n " + c + " link set " + c_if + " up && ip -n " + c + " link set lo up";
            if (sh(cmds + " 2>/dev/null") != 0) {
                why = "cannot make veth pairs here";
                return;
            }
        }
        ok = true;
    }
    ~Topology() {
        for (const std::string& c : clients) sh("ip netns del " + c + " 2>/dev/null");
        sh("ip netns del " + server + " 2>/dev/null");
    }
};

// A line server (asyncio) for the server namespace: "+OK\r\n" for each line, and on SIGTERM
// "served N", the number of requests it answered.
const char* counting_server = R"PY(
import asyncio, signal
served = 0
async def handle(r, w):
    global served
    try:
        while True:
            line = await r.readline()
            if not line:
                break
            served += 1
            w.write(b"+OK\r\n")
    except ConnectionError:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(handle, "0.0.0.0", 0)
    print("Serving on 0.0.0.0:%d" % srv.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print("served %d" % served, flush=True)
asyncio.run(main())
)PY";

double json_number(const std::string& json, const std::string& key) {
    const auto at = json.find("\"" + key + "\": ");
    if (at == std::string::npos) return std::nan("");
    return std::strtod(json.c_str() + at + key.size() + 4, nullptr);
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_SUITE("load multihost") {
    TEST_CASE(
        "three client namespaces, started together, merged: totals equal the server's count") {
        Topology net(3);
        if (!net.ok) {
            MESSAGE("skipped: " << net.why);
            return;
        }
        const std::string dir = "/tmp/aioring-load-multihost-" + net.tag;
        REQUIRE(sh("mkdir -p " + dir) == 0);
        std::ofstream(dir + "/server.py") << counting_server;
        testing::Process server({"/usr/bin/env", "ip", "netns", "exec", net.server, "python3", "-u",
                                 dir + "/server.py"});
        const int port = server.serving_port();
        REQUIRE(port > 0);

        timespec ts;
        ::clock_gettime(CLOCK_REALTIME, &ts);
        const std::string start = std::to_string(static_cast<double>(ts.tv_sec) + 1.5);
        std::string cmd;
        for (std::size_t k = 0; k < net.clients.size(); ++k)
            cmd += "ip netns exec " + net.clients[k] + " " + AIORING_LOAD_BIN + " --host 10.213." +
                   std::to_string(k) + ".1 --port " + std::to_string(port) +
                   " --protocol framed --request 'PING {conn}-{seq}\\r\\n'"
                   " --reply-delimiter '\\r\\n' --expect-prefix +OK --connections 4 --rate 300 "
                   "--duration 1"
                   " --warmup 0 --start-at " +
                   start + " --json > " + dir + "/r" + std::to_string(k) + ".json 2>" + dir + "/e" +
                   std::to_string(k) + " & ";
        REQUIRE(sh(cmd + "wait") == 0);
        server.signal(SIGTERM);
        REQUIRE(server.wait(10) == 0);
        const auto at = server.out.find("served ");
        REQUIRE(at != std::string::npos);
        const double served = std::strtod(server.out.c_str() + at + 7, nullptr);

        std::vector<std::string> files;
        double requests = 0;
        for (std::size_t k = 0; k < net.clients.size(); ++k) {
            const std::string r = slurp(dir + "/r" + std::to_string(k) + ".json");
            INFO("client " << k << ": " << r << slurp(dir + "/e" + std::to_string(k)));
            CHECK(json_number(r, "messages") > 0);
            requests += json_number(r, "requests");
            files.push_back(dir + "/r" + std::to_string(k) + ".json");
        }
        testing::Process merge({AIORING_LOAD_BIN, "merge", files[0], files[1], files[2]});
        REQUIRE(merge.wait(10) == 0);
        INFO(merge.out << merge.err);
        CHECK(json_number(merge.out, "merged_from") == 3);
        CHECK(json_number(merge.out, "connections") == 12);
        CHECK(json_number(merge.out, "requested_rate") == 900);
        CHECK(json_number(merge.out, "requests") == requests);
        // Every request any client sent in its window was answered by the server, and nothing else.
        CHECK(json_number(merge.out, "messages") + json_number(merge.out, "timeouts") == served);
        CHECK(json_number(merge.out, "errors") == 0);
        sh("rm -rf " + dir);
    }
}

TEST_SUITE("load multihost") {
    TEST_CASE(
        "an unreachable network and a host that never answers the handshake: one line, exit 1") {
        Topology net(1);
        if (!net.ok) {
            MESSAGE("skipped: " << net.why);
            return;
        }
        // No route to 10.213.200.0/24 in the client namespace: the kernel says so at once.

        const std::string client = "ip netns exec " + net.clients[0] + " " + AIORING_LOAD_BIN;
        const std::string err = "/tmp/aioring-load-unreach-" + net.tag;
        CHECK(sh(client + " --host 10.213.200.1 --port 80 --duration 1 2>" + err) == 1);
        const std::string unreachable = slurp(err);
        CHECK(unreachable.find("Network is unreachable") != std::string::npos);
        CHECK(std::count(unreachable.begin(), unreachable.end(), '\n') == 1);
        // A peer that drops every packet (the server namespace's address on a link kept down):
        // the connects time out after --connect-timeout.
        REQUIRE(sh("ip -n " + net.server + " link set als0" + net.tag + " down") == 0);
        CHECK(sh(client +
                 " --host 10.213.0.1 --port 80 --connections 2 --connect-timeout 300ms --duration "
                 "1 2>" +
                 err) == 1);
        const std::string timed_out = slurp(err);
        INFO(timed_out);
        CHECK(timed_out.find("timed out") != std::string::npos);
        CHECK(std::count(timed_out.begin(), timed_out.end(), '\n') == 1);
        std::remove(err.c_str());
    }
}
