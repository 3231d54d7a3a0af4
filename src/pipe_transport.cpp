// SPDX-License-Identifier: Apache-2.0
// Pipe transports: read(2) at the file position, writev(2), and a write end's watch for its
// reader going away.
#include "src/pipe_transport.hpp"

#include <fmt/core.h>
#include <poll.h>
#include <sys/stat.h>

#include <stdexcept>

namespace aioring::detail {

std::any PipeTransport::get_extra_info(std::string_view name, std::any default_value) const {
    if (name == "pipe") return fd_closed_ ? default_value : std::any(fd_);
    return StreamTransport::get_extra_info(name, std::move(default_value));
}

void PipeTransport::prep_receive(io_uring_sqe* s, void* buf, std::size_t len) {
    // Offset -1: the file position, for a regular file given as a pipe (a FIFO ignores it).
    io_uring_prep_read(s, fd_, buf, static_cast<unsigned>(len), -1);
}

void PipeTransport::prep_send_iov(io_uring_sqe* s, std::size_t n) {
    // A pipe's writev raises SIGPIPE when the reader is gone: the pipe transports ignore that
    // signal process-wide (as Python does) and see EPIPE.
    io_uring_prep_writev(s, fd_, iov_.data(), static_cast<unsigned>(n), -1);
}

// ---- read end --------------------------------------------------------------------------------

ReadPipeTransport::ReadPipeTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol)
    : PipeTransport(core, fd, std::move(protocol)) {
    // No write side: write() takes the cold path after write_eof(), and refuse_write() says
    // why (no extra test on the write path).
    eof_requested_ = true;
}

void ReadPipeTransport::writelines(std::span<const std::string_view>) {
    refuse_write("writelines");
}

void ReadPipeTransport::write_eof() { refuse_write("write_eof"); }

void ReadPipeTransport::refuse_write(const char* call) const {
    throw std::logic_error(
        fmt::format("{}() on a read pipe transport: it has no write side", call));
}

// ---- write end -------------------------------------------------------------------------------

WritePipeTransport::WritePipeTransport(LoopCore& core, int fd,
                                       std::unique_ptr<BaseProtocol> protocol)
    : PipeTransport(core, fd, std::move(protocol)) {
    // Only a FIFO or a socket reports its reader's close; a file or a tty never does.
    struct stat st {};
    watch_reader_ = ::fstat(fd_, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

void WritePipeTransport::start_receiving() {
    if (!watch_reader_ || closing_ || watch_armed_) return;
    // The kernel always reports POLLERR/POLLHUP; a pipe's write end gets POLLERR once the
    // reader has closed.
    io_uring_sqe* s = core_.ring.sqe();
    io_uring_prep_poll_add(s, fd_, POLLERR);
    io_uring_sqe_set_data(s, static_cast<uring::Op*>(&watch_op_));
    watch_armed_ = true;
}

void WritePipeTransport::stop_receiving() {
    if (!watch_armed_) return;
    core_.ring.cancel(watch_op_);
}

void WritePipeTransport::on_reader_gone(int res, unsigned) {
    watch_armed_ = false;
    // The reader went away (asyncio's _UnixWritePipeTransport._read_ready): with data still
    // owed that is a broken pipe, otherwise a clean close.
    if (res > 0 && !closing_) {
        if (flow_.size() != 0)
            force_close(std::make_error_code(std::errc::broken_pipe));
        else
            close();
    }
    maybe_release();
}

void WritePipeTransport::loop_closed() {
    watch_armed_ = false;
    StreamTransport::loop_closed();
}

}  // namespace aioring::detail
