// SPDX-License-Identifier: Apache-2.0
// The coroutine-streams echo behind `echo_server --api streams`: per connection, read whatever
// is available, write it back, drain (so a client that does not read stops this one reading),
// until EOF; then close, which flushes what is still owed.
#pragma once

#include <aioring/streams.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace aioring {

inline Task<void> echo_streams_client(StreamReader reader, StreamWriter writer) {
    try {
        // read_view: the bytes where they are (up to 256 KiB, usually all the reader holds).
        // Written back before the next suspension, bytes that came straight from the socket's
        // receive buffer are sent from it, copied nowhere.
        for (;;) {
            const std::string_view data = co_await reader.read_view(256 * 1024);
            if (data.empty()) break;
            writer.write(data);
            co_await writer.drain();
        }
    } catch (const std::system_error&) {
        // The peer reset the connection: nothing to report, just let it go.
    }
    writer.close();
}

inline Future<std::shared_ptr<Server>> start_echo_streams_server(EventLoop& loop, std::string host,
                                                                 std::uint16_t port,
                                                                 bool reuse_port) {
    ServerOptions options;
    options.reuse_port = reuse_port;
    return loop.create_task(
        start_server(echo_streams_client, std::move(host), port, default_stream_limit, options));
}

}  // namespace aioring
