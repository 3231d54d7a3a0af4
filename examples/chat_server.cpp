// SPDX-License-Identifier: Apache-2.0
// A line-based chat server on TaskGroup and timeout scopes: each client names itself (within
// 30 s), then every line it sends goes to the others. Per client, a TaskGroup runs the reading
// loop (with an idle timeout) beside a sending task fed by a bounded queue, so that a slow
// client misses lines instead of slowing everyone down. SIGINT/SIGTERM close the server, which
// cancels every handler; the program exits 0 once all connections are closed.
#include <aioring/aioring.hpp>

#include <signal.h>

#include <cstdio>
#include <map>
#include <string>
#include <system_error>

#include "cli.hpp"

using namespace aioring;

namespace {

struct Chat {
    std::map<int, Queue<std::string>*> clients;  // by client id
    int next_id = 0;
    double name_timeout = 30;
    double idle_timeout = 300;

    void broadcast(int from, const std::string& text) {
        for (auto& [id, queue] : clients) {
            if (id == from) continue;
            try {
                queue->put_nowait(text);
            } catch (const QueueFull&) {
                // A slow client misses lines.
            }
        }
    }
};

std::string strip(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

// Writes what the queue holds until it yields the empty string.
Task<void> send_loop(Queue<std::string>& queue, StreamWriter writer) {
    for (;;) {
        std::string line = co_await queue.get();
        if (line.empty()) co_return;
        writer.write(line);
        co_await writer.drain();
    }
}

Task<void> session(TaskGroup& tg, Chat& chat, int id, Queue<std::string>& queue,
                   StreamReader reader, StreamWriter writer, std::string name) {
    (void)tg.create_task(send_loop(queue, writer));
    for (;;) {
        // No line for idle_timeout seconds: TimeoutError ends the session.
        std::string line = co_await timeout(chat.idle_timeout, reader.readline());
        if (line.empty()) break;  // EOF
        chat.broadcast(id, name + ": " + line);
    }
    queue.put_nowait("");  // lets send_loop finish
}

Task<void> handle(Chat& chat, StreamReader reader, StreamWriter writer) {
    writer.write("name? ");
    std::string name;
    try {
        name = strip(co_await timeout(chat.name_timeout, reader.readline()));
    } catch (const TimeoutError&) {
        writer.write("too slow\n");
    }
    if (name.empty()) {
        writer.close();
        co_return;
    }
    const int id = chat.next_id++;
    Queue<std::string> queue(64);
    chat.clients[id] = &queue;
    chat.broadcast(id, "* " + name + " joined\n");
    try {
        TaskGroup tg;
        co_await tg.run(session(tg, chat, id, queue, reader, writer, name));
    } catch (const ExceptionGroup& e) {
        if (e.find<TimeoutError>()) {
            writer.write("idle too long\n");
        } else if (!e.find<std::system_error>()) {  // not a connection reset either
            chat.clients.erase(id);
            throw;
        }
    } catch (...) {
        chat.clients.erase(id);  // cancelled (the server closing): leave quietly
        throw;
    }
    chat.clients.erase(id);
    chat.broadcast(id, "* " + name + " left\n");
    writer.close();
}

Task<int> main_task(EventLoop& loop, Chat& chat, std::string host, std::uint16_t port) {
    ClientConnected cb = [&chat](StreamReader r, StreamWriter w) -> Task<void> {
        return handle(chat, std::move(r), std::move(w));
    };
    // The signal handlers come first: at an fd limit their signalfd fails before the server
    // exists (one line, exit 1), and a SIGTERM sent as soon as "Serving on" is seen finds them.
    std::shared_ptr<Server> server;
    bool stopped = false;
    auto stop = [&loop, &server, &stopped] {
        stopped = true;
        if (server) server->close();  // cancels every handler
        loop.remove_signal_handler(SIGINT);
        loop.remove_signal_handler(SIGTERM);
    };
    loop.add_signal_handler(SIGINT, stop);
    loop.add_signal_handler(SIGTERM, stop);
    try {
        server = co_await start_server(std::move(cb), host, port);
    } catch (...) {
        stop();
        throw;
    }
    if (stopped) server->close();
    for (const SocketAddress& a : server->addresses())
        std::printf("Serving on %s\n", a.to_string().c_str());
    co_await server->serve_forever();
    co_await server->wait_closed();
    co_return 0;
}

}  // namespace

namespace {
int program(int argc, char** argv) {
    cli::Args args(argc, argv,
                   "usage: chat_server [--host 127.0.0.1] [--port 8888] [--idle-timeout 300]\n"
                   "A line-based chat server: name yourself, then every line goes to the "
                   "others.\n",
                   {{"host", "127.0.0.1"}, {"port", "8888"}, {"idle-timeout", "300"}});
    const std::string host = args.str("host");
    const std::uint16_t port = args.port();
    Chat chat;
    chat.idle_timeout = args.number("idle-timeout", 0.001, 1e9);
    try {
        return aioring::run([&](EventLoop& loop) { return main_task(loop, chat, host, port); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
}
}  // namespace

int main(int argc, char** argv) { return cli::guarded_main("chat_server", argc, argv, program); }
