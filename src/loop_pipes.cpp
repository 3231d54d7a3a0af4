// SPDX-License-Identifier: Apache-2.0
// connect_read_pipe / connect_write_pipe: a pipe, FIFO or character device fd wrapped in a
// pipe-mode stream transport (src/socket_transport.cpp).
#include <aioring/loop.hpp>

#include <sys/stat.h>

#include <stdexcept>

#include "src/op_awaiter.hpp"
#include "src/socket_transport.hpp"
#include "src/subprocess.hpp"

namespace aioring::detail {
namespace {

template <class T>
Future<TransportAndProtocol<T>> wrap_pipe(LoopCore& core, int fd, ProtocolFactory& factory,
                                          SocketTransport::Mode mode) {
    auto fut = Future<TransportAndProtocol<T>>(core.loop);
    FdGuard guard(fd);
    try {
        struct stat st {};
        if (fd < 0 || ::fstat(fd, &st) != 0)
            throw std::invalid_argument("pipe transport: bad file descriptor");
        if (S_ISDIR(st.st_mode)) throw std::invalid_argument("pipe transport: fd is a directory");
        if (mode == SocketTransport::Mode::write_pipe) ignore_sigpipe();
        auto protocol = factory();
        BaseProtocol* p = protocol.get();
        auto holder = std::make_shared<std::shared_ptr<SocketTransport>>();
        auto t = std::make_shared<SocketTransport>(core, fd, std::move(protocol), mode);
        guard.release();  // the transport owns it now
        *holder = t;
        t->start([fut, holder, p] {
            if (!fut.done()) fut.set_result(TransportAndProtocol<T>{std::move(*holder), p});
        });
    } catch (...) {
        fut.set_exception(std::current_exception());
    }
    return fut;
}

}  // namespace
}  // namespace aioring::detail

namespace aioring {

Future<ReadPipeConnection> EventLoop::connect_read_pipe(ProtocolFactory factory, int fd) {
    return detail::wrap_pipe<ReadTransport>(*core_, fd, factory,
                                            detail::SocketTransport::Mode::read_pipe);
}

Future<WritePipeConnection> EventLoop::connect_write_pipe(ProtocolFactory factory, int fd) {
    return detail::wrap_pipe<WriteTransport>(*core_, fd, factory,
                                             detail::SocketTransport::Mode::write_pipe);
}

}  // namespace aioring
