// SPDX-License-Identifier: Apache-2.0
// Shared by the example servers: stop cleanly on SIGINT/SIGTERM (close the listening sockets, let
// open transports close, exit 0 within 2 seconds), and keep track of open connections.
#pragma once

#include <aioring/aioring.hpp>

#include <signal.h>

#include <cstdio>
#include <functional>
#include <set>
#include <string>

namespace serve {

// The transports a loop's protocols are connected through, so a shutdown can close them.
struct Connections {
    std::set<aioring::BaseTransport*> open;
    void close_all() {
        auto copy = open;
        for (auto* t : copy) t->close();
    }
};

// "Serving on HOST:PORT[, HOST:PORT...]" for a server's sockets.
inline std::string describe(const aioring::Server& server) {
    std::string out;
    for (const auto& a : server.addresses()) {
        if (!out.empty()) out += ", ";
        out += a.to_string();
    }
    return out;
}

// Blocks SIGINT and SIGTERM in this thread (and so in threads started after it): they are read
// through the loop's signalfd.
inline void block_stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// SIGINT and SIGTERM stop `loop`. Called before the server prints `Serving on`, so that a
// signalfd that cannot be had (no fd left) is a start-up error, not a later one.
inline void handle_stop_signals(aioring::EventLoop& loop) {
    loop.add_signal_handler(SIGINT, [&loop] { loop.stop(); });
    loop.add_signal_handler(SIGTERM, [&loop] { loop.stop(); });
}

// Runs `loop` (after handle_stop_signals) until SIGINT/SIGTERM, then calls `stop` (which closes
// servers and connections) and keeps the loop turning until `idle()` says everything has
// closed, or 1.5 s have passed.
inline void run_until_signal(aioring::EventLoop& loop, const std::function<void()>& stop,
                             const std::function<bool()>& idle) {
    loop.run_forever();
    stop();
    const double deadline = loop.time() + 1.5;
    while (!idle() && loop.time() < deadline) {
        loop.call_later(0.005, [&loop] { loop.stop(); });
        loop.run_forever();
    }
}

}  // namespace serve
