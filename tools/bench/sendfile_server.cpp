// SPDX-License-Identifier: Apache-2.0
// The bench's file server (tools/dev bench --sendfile): every connection gets the whole file,
// then EOF, sent by loop.sendfile (splice), by sendfile's read-and-write fallback, or by a
// read/write loop in user code (pread, StreamWriter::write, drain).
#include <aioring/aioring.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

using namespace aioring;

namespace {

const char usage[] = "usage: sendfile_server --mode splice|fallback|loop --file PATH [--port N]\n";

enum class Mode { splice, fallback, loop };

Task<void> serve(StreamReader, StreamWriter w, Mode mode, int fd, std::size_t size) {
    try {
        if (mode == Mode::loop) {
            std::string buf(256 * 1024, '\0');
            for (std::size_t off = 0; off < size;) {
                const ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
                if (n <= 0) break;
                w.write(std::string_view(buf.data(), static_cast<std::size_t>(n)));
                co_await w.drain();
                off += static_cast<std::size_t>(n);
            }
        } else {
            co_await w.sendfile(fd, 0);
        }
        w.close();
        co_await w.wait_closed();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sendfile_server: %s\n", e.what());
    }
}

Task<void> run_server(Mode mode, int fd, std::size_t size, std::uint16_t port) {
    EventLoop& loop = co_await get_running_loop();
    // Named, not a temporary in the co_await (GCC 12, README "Coroutines").
    ClientConnected client = [mode, fd, size](StreamReader r, StreamWriter w) {
        return serve(std::move(r), std::move(w), mode, fd, size);
    };
    auto server = co_await start_server(std::move(client), "127.0.0.1", port);
    std::printf("Serving on 127.0.0.1:%u\n", static_cast<unsigned>(server->addresses()[0].port()));
    std::fflush(stdout);
    Event stop;
    loop.add_signal_handler(SIGTERM, [&stop] { stop.set(); });
    loop.add_signal_handler(SIGINT, [&stop] { stop.set(); });
    co_await stop.wait();
    server->close();
}

}  // namespace

int main(int argc, char** argv) {
    Mode mode = Mode::splice;
    const char* path = nullptr;
    long port = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--help") {
            std::fputs(usage, stdout);
            return 0;
        } else if (a == "--mode" && has_value) {
            const std::string m = argv[++i];
            if (m == "splice")
                mode = Mode::splice;
            else if (m == "fallback")
                mode = Mode::fallback;
            else if (m == "loop")
                mode = Mode::loop;
            else {
                std::fprintf(stderr, "sendfile_server: unknown mode '%s'\n%s", m.c_str(), usage);
                return 2;
            }
        } else if (a == "--file" && has_value) {
            path = argv[++i];
        } else if (a == "--port" && has_value) {
            char* end = nullptr;
            port = std::strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) {
                std::fprintf(stderr, "sendfile_server: bad port '%s'\n%s", argv[i], usage);
                return 2;
            }
        } else {
            std::fprintf(stderr, "sendfile_server: unexpected argument '%s'\n%s", a.c_str(), usage);
            return 2;
        }
    }
    if (!path) {
        std::fprintf(stderr, "sendfile_server: --file is required\n%s", usage);
        return 2;
    }
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
        std::fprintf(stderr, "sendfile_server: %s: %s\n", path, std::strerror(errno));
        return 1;
    }
    if (mode == Mode::fallback) ::setenv("AIORING_SENDFILE_NO_SPLICE", "1", 1);
    try {
        aioring::run(run_server(mode, fd, static_cast<std::size_t>(st.st_size),
                                static_cast<std::uint16_t>(port)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sendfile_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
