// SPDX-License-Identifier: Apache-2.0
// The coroutine-streams echo behind `echo_server --api streams`: per connection, read whatever
// is available, write it back, drain (so a client that does not read stops this one reading),
// until EOF; then close, which flushes what is still owed.
#pragma once

#include <aioring/streams.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

namespace aioring {

inline Task<void> echo_streams_client(StreamReader reader, StreamWriter writer) {
    // Reused: no allocation per message. It grows on the first read, so an idle connection
    // holds no 64 KiB of it.
    std::string buf;
    try {
        // Up to 256 KiB at a time: usually all the reader holds, which it then hands over
        // without copying (it never holds much more: reading pauses above twice its limit).
        while (co_await reader.read_into(buf, 256 * 1024) != 0) {
            writer.write(buf);
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
