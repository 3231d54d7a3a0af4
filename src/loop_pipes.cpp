// SPDX-License-Identifier: Apache-2.0
// connect_read_pipe / connect_write_pipe: a pipe, FIFO or character device fd wrapped in a
// pipe transport (src/pipe_transport.hpp).
#include <aioring/loop.hpp>

#include <sys/stat.h>

#include <stdexcept>
#include <type_traits>

#include "src/op_awaiter.hpp"
#include "src/pipe_transport.hpp"
#include "src/subprocess.hpp"

namespace aioring::detail {
namespace {

template <class T, class Pipe>
Future<TransportAndProtocol<T>> wrap_pipe(LoopCore& core, int fd, ProtocolFactory& factory) {
    auto fut = Future<TransportAndProtocol<T>>(core.loop);
    FdGuard guard(fd);
    try {
        struct stat st {};
        if (fd < 0 || ::fstat(fd, &st) != 0)
            throw std::invalid_argument("pipe transport: bad file descriptor");
        if (S_ISDIR(st.st_mode)) throw std::invalid_argument("pipe transport: fd is a directory");
        if (std::is_same_v<Pipe, WritePipeTransport>) ignore_sigpipe();
        auto protocol = factory();
        BaseProtocol* p = protocol.get();
        auto holder = std::make_shared<std::shared_ptr<Pipe>>();
        auto t = std::make_shared<Pipe>(core, fd, std::move(protocol));
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
    return detail::wrap_pipe<ReadTransport, detail::ReadPipeTransport>(*core_, fd, factory);
}

Future<WritePipeConnection> EventLoop::connect_write_pipe(ProtocolFactory factory, int fd) {
    return detail::wrap_pipe<WriteTransport, detail::WritePipeTransport>(*core_, fd, factory);
}

}  // namespace aioring
