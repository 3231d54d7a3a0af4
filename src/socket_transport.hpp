// SPDX-License-Identifier: Apache-2.0
// SocketTransport: the stream transport over a connected socket (TCP or Unix). What it shares
// with the pipes is StreamTransport's (src/stream_transport.hpp).
#pragma once

#include <sys/socket.h>

#include <memory>

#include "src/stream_transport.hpp"

namespace aioring::detail {

// A connected socket (TCP or Unix): multishot receive into the buffer ring, sendmsg for several
// buffers, write_eof as shutdown(SHUT_WR).
class SocketTransport final : public StreamTransport {
public:
    SocketTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol);

    bool can_write_eof() const override { return true; }
    std::any get_extra_info(std::string_view name, std::any default_value) const override;
    std::shared_ptr<SocketTransport> shared_from_this() {
        return std::static_pointer_cast<SocketTransport>(StreamTransport::shared_from_this());
    }
    // The server that accepted this connection lists its live ones through these (close_clients),
    // with no allocation per connection.
    SocketTransport* server_prev = nullptr;
    SocketTransport* server_next = nullptr;

private:
    void prep_receive(io_uring_sqe* s, void* buf, std::size_t len) override;
    void prep_send_iov(io_uring_sqe* s, std::size_t n) override;
    void shut_write() override;

    SocketAddress peername_;
    SocketAddress sockname_;
    msghdr msg_{};
};

// Creates a transport for a connected socket and schedules connection_made.
std::shared_ptr<SocketTransport> make_socket_transport(LoopCore& core, int fd,
                                                       std::unique_ptr<BaseProtocol> protocol,
                                                       Callback on_made = {});

}  // namespace aioring::detail
