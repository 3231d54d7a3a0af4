// SPDX-License-Identifier: Apache-2.0
// SocketTransport: a StreamTransport over a connected socket. Receives with recv, sends several
// buffers with sendmsg, write_eof is shutdown(SHUT_WR); TCP_NODELAY is set on TCP sockets.
#include "src/socket_transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace aioring::detail {

std::shared_ptr<SocketTransport> make_socket_transport(LoopCore& core, int fd,
                                                       std::unique_ptr<BaseProtocol> protocol,
                                                       Callback on_made) {
    auto t = std::make_shared<SocketTransport>(core, fd, std::move(protocol));
    t->start(std::move(on_made));
    return t;
}

SocketTransport::SocketTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol)
    : StreamTransport(core, fd, std::move(protocol), true) {
    peername_ = peername_of(fd_);
    sockname_ = sockname_of(fd_);
    if (sockname_.family() == AF_INET || sockname_.family() == AF_INET6) {
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    msg_.msg_iov = nullptr;
}

void SocketTransport::prep_receive(io_uring_sqe* s, void* buf, std::size_t len) {
    io_uring_prep_recv(s, fd_, buf, len, 0);
}

void SocketTransport::prep_send_iov(io_uring_sqe* s, std::size_t n) {
    msg_.msg_iov = iov_.data();
    msg_.msg_iovlen = n;
    io_uring_prep_sendmsg(s, fd_, &msg_, MSG_NOSIGNAL);
}

void SocketTransport::shut_write() { ::shutdown(fd_, SHUT_WR); }

std::any SocketTransport::get_extra_info(std::string_view name, std::any default_value) const {
    if (name == "peername") return peername_.empty() ? default_value : std::any(peername_);
    if (name == "sockname") return sockname_.empty() ? default_value : std::any(sockname_);
    if (name == "socket") return fd_closed_ ? default_value : std::any(fd_);
    return StreamTransport::get_extra_info(name, std::move(default_value));
}

}  // namespace aioring::detail
