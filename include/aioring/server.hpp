// SPDX-License-Identifier: Apache-2.0
// Server: what create_server/create_unix_server (and start_server) return, as asyncio's.
// Each listening socket accepts with a multishot accept; every accepted connection gets a new
// protocol from the factory.
#pragma once

#include <aioring/address.hpp>
#include <aioring/future.hpp>

#include <vector>

namespace aioring {

class EventLoop;

class Server {
public:
    virtual ~Server() = default;
    // Stops listening and closes the listening sockets; open connections stay open.
    virtual void close() = 0;
    // asyncio 3.13: calls close() on every connection this server accepted that is still open
    // (each flushes its buffer, then its protocol's connection_lost runs; a TLS connection
    // sends close_notify first). Call close() before, or new clients may still come in.
    virtual void close_clients() = 0;
    // asyncio 3.13: calls abort() on every such connection: buffered data is dropped and
    // connection_lost follows at once.
    virtual void abort_clients() = 0;
    // Done once the server is closed, its listening operations have completed and every
    // connection it accepted has been lost (asyncio 3.12). A Unix server's socket file is
    // removed when it closes, unless something replaced it meanwhile.
    virtual Future<void> wait_closed() = 0;
    virtual bool is_serving() const = 0;
    virtual void start_serving() = 0;
    // Starts serving; completes when the server is closed. Cancelling it closes the server.
    virtual Future<void> serve_forever() = 0;
    // The listening sockets' fds and their bound addresses.
    virtual std::vector<int> sockets() const = 0;
    virtual std::vector<SocketAddress> addresses() const = 0;
    virtual EventLoop& get_loop() const = 0;
};

}  // namespace aioring
