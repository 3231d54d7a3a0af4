// SPDX-License-Identifier: Apache-2.0
// Pipe transports (connect_read_pipe, connect_write_pipe, a subprocess's pipes): the stream
// transport with read(2)/writev(2) instead of recv/sendmsg and no half-close.
#pragma once

#include <memory>

#include "src/stream_transport.hpp"

namespace aioring::detail {

// What both pipe ends do: read at the file position, writev, "pipe" in get_extra_info.
class PipeTransport : public StreamTransport {
public:
    std::any get_extra_info(std::string_view name, std::any default_value) const override;

protected:
    PipeTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol)
        : StreamTransport(core, fd, std::move(protocol), false) {}

    void prep_receive(io_uring_sqe* s, void* buf, std::size_t len) override;
    void prep_send_iov(io_uring_sqe* s, std::size_t n) override;
};

// The read end: closes at EOF (asyncio), and has no write side: write(), writelines() and
// write_eof() throw std::logic_error; can_write_eof() is false.
class ReadPipeTransport final : public PipeTransport {
public:
    ReadPipeTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol);

    void writelines(std::span<const std::string_view> chunks) override;
    void write_eof() override;
    bool can_write_eof() const override { return false; }

private:
    bool closes_at_eof() const override { return true; }
    [[noreturn]] void refuse_write(const char* call) const override;
};

// The write end: write_eof() closes it, and on a FIFO or a socket it watches for its reader
// going away (POLLERR) instead of receiving.
class WritePipeTransport final : public PipeTransport {
public:
    WritePipeTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol);

    void write_eof() override { write_eof_closes(); }
    bool can_write_eof() const override { return true; }
    void pause_reading() override {}
    void resume_reading() override {}
    void loop_closed() override;

private:
    struct ReaderGoneOp final : uring::Op {
        WritePipeTransport& t;
        explicit ReaderGoneOp(WritePipeTransport& tr) : t(tr) {}
        void complete(int res, unsigned flags) override { t.on_reader_gone(res, flags); }
    };

    void start_receiving() override;
    void stop_receiving() override;
    bool busy() const override { return watch_armed_ || StreamTransport::busy(); }
    void on_reader_gone(int res, unsigned flags);

    ReaderGoneOp watch_op_{*this};
    bool watch_reader_ = false;  // a FIFO or a socket: POLLERR when the reader goes
    bool watch_armed_ = false;
};

}  // namespace aioring::detail
