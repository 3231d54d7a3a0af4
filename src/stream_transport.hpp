// SPDX-License-Identifier: Apache-2.0
// StreamTransport: what every stream transport shares (one receive op, one send op, asyncio's
// flow control and its close/abort/write_eof ordering). The kinds derive from it: SocketTransport
// over a connected socket (src/socket_transport.hpp) and the pipes (src/pipe_transport.hpp).
#pragma once

#include <aioring/loop.hpp>
#include <aioring/transport.hpp>

#include <sys/uio.h>

#include <array>
#include <memory>
#include <string>

#include "src/loop_core.hpp"
#include "src/transport_base.hpp"
#include "src/write_flow.hpp"
#include "src/write_ring.hpp"

namespace aioring::detail {

// Told how many bytes each completed send took off the write buffer (a TLS transport above
// counts its records out this way).
class SendObserver {
public:
    virtual void bytes_sent(std::size_t n) = 0;

protected:
    ~SendObserver() = default;
};

// sendfile's side of a write barrier (src/sendfile.cpp).
class WriteBarrier {
public:
    // Every byte written before the barrier went up has been sent.
    virtual void writes_before_sent() = 0;
    // abort() or a connection error: stop using the socket and release the barrier.
    virtual void transport_aborted(std::error_code ec) = 0;

protected:
    ~WriteBarrier() = default;
};

// The state and hot path every stream transport shares. The kinds (SocketTransport, and
// ReadPipeTransport / WritePipeTransport in src/pipe_transport.hpp) override only cold paths:
// the single-shot receive, a send of several buffers, the write side's shutdown, and start.
class StreamTransport : public Transport,
                        public Flushable,
                        public Rearmable,
                        public TransportBase,
                        public std::enable_shared_from_this<StreamTransport> {
public:
    ~StreamTransport() override;

    // Schedules connection_made (and then reading); `on_made` runs right after it.
    void start(Callback on_made = {});
    // Runs once connection_lost has returned (a server counts its open connections this way).
    void set_lost_hook(Callback hook) { lost_hook_ = std::move(hook); }

    // BaseTransport
    void close() override;
    bool is_closing() const override { return closing_; }
    std::any get_extra_info(std::string_view name, std::any default_value) const override;
    void set_protocol(std::unique_ptr<BaseProtocol> protocol) override;
    // start_tls: installs `protocol` and hands the current one back instead of freeing it; the
    // caller keeps it alive as long as this transport (an armed receive may point into it).
    std::unique_ptr<BaseProtocol> exchange_protocol(std::unique_ptr<BaseProtocol> protocol);
    // pause_writing was the protocol's last flow-control call.
    bool is_writing_paused() const { return flow_.paused(); }
    // A pipe transport (connect_read_pipe, connect_write_pipe, a subprocess's pipes).
    bool is_pipe() const { return !socket_; }
    BaseProtocol* get_protocol() const override { return protocol_.get(); }
    EventLoop& get_loop() const override { return core_.loop; }
    // ReadTransport
    bool is_reading() const override { return reading_ && !closing_; }
    void pause_reading() override;
    void resume_reading() override;
    // WriteTransport
    void write(std::string_view data) override;
    void write(std::string&& data) override;
    void writelines(std::span<const std::string_view> chunks) override;
    // After the bytes buffered now are sent, shut_write(); a pipe overrides it.
    void write_eof() override;
    void abort() override;
    std::size_t get_write_buffer_size() const override { return flow_.size(); }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return {flow_.low(), flow_.high()};
    }
    void set_write_buffer_limits(std::optional<std::size_t> high,
                                 std::optional<std::size_t> low) override;

    // Flushable / Rearmable / LoopResource
    void flush() override;
    void rearm() override;
    void loop_closed() override;

    // Null: nobody. The observer must outlive this transport or reset it.
    void set_send_observer(SendObserver* o) { send_observer_ = o; }

    // sendfile: the bytes buffered now still go out, what is written from now on waits behind
    // the barrier until release_write_barrier(); close() and write_eof() wait for it too, and
    // the fd stays open. One barrier at a time; `b` hears (from the loop, never inside this
    // call) when the bytes before it are sent, and must release the barrier after
    // transport_aborted. An error passed to the release closes the transport with it.
    void set_write_barrier(WriteBarrier* b);
    void release_write_barrier(std::error_code ec);
    bool has_write_barrier() const { return barrier_ != nullptr; }
    // Counters for tests and benchmarks.
    std::uint64_t sends_submitted() const { return sends_; }
    // write() calls sent straight from the ring buffer being delivered (no copy).
    std::uint64_t held_writes() const { return held_writes_; }

protected:
    // `socket`: a connected socket (a plain send for one buffer, multishot receive), else a pipe.
    StreamTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol, bool socket);

    // Cold paths each kind does its own way.
    // Prepares a single-shot receive of up to `len` bytes into `buf`.
    virtual void prep_receive(io_uring_sqe* s, void* buf, std::size_t len) = 0;
    // Prepares a send of iov_[0, n) (several buffers, or one behind a write barrier).
    virtual void prep_send_iov(io_uring_sqe* s, std::size_t n) = 0;
    // Shuts the write side (a socket's SHUT_WR; a pipe has none).
    virtual void shut_write() {}
    // Whether EOF closes the transport even when eof_received() asks to keep it open.
    virtual bool closes_at_eof() const { return false; }
    // Right after connection_made: starts receiving.
    virtual void start_receiving() {
        if (wants_read() && !recv_armed_) arm_recv();
    }
    // close() and force_close(): stops receiving.
    virtual void stop_receiving() { cancel_recv(); }
    // Throws std::logic_error for `call` (write, writelines, write_eof) after write_eof().
    [[noreturn]] virtual void refuse_write(const char* call) const;

    // The write_eof() of a transport with no half-close: closing its end is its EOF.
    void write_eof_closes();
    void force_close(std::error_code ec);
    // TransportBase
    bool busy() const override {
        return recv_armed_ || send_inflight_ || flush_scheduled || rearm_scheduled || barrier_;
    }

    int fd_;
    const bool socket_;
    bool fd_closed_ = false;
    bool eof_requested_ = false;  // write_eof() called
    // The send of several buffers: the held writes (max_held_sends), or the write buffer's
    // one or two spans.
    static constexpr std::size_t max_held_sends = 4;
    std::array<iovec, max_held_sends> iov_{};
    WriteFlow flow_{*this};  // the buffered byte count and pause/resume

private:
    struct RecvOp final : uring::Op {
        StreamTransport& t;
        explicit RecvOp(StreamTransport& tr) : t(tr) {}
        void complete(int res, unsigned flags) override { t.on_recv(res, flags); }
    };
    struct SendOp final : uring::Op {
        StreamTransport& t;
        explicit SendOp(StreamTransport& tr) : t(tr) {}
        void complete(int res, unsigned flags) override { t.on_send(res, flags); }
    };

    void arm_recv();
    void cancel_recv();
    void on_recv(int res, unsigned flags);
    void deliver(std::string_view data);
    // Hands `data` to the protocol: data_received, inline on the hot path, or copied into a
    // BufferedProtocol's buffers (dispatch_copy).
    void dispatch(std::string_view data) {
        if (buffered_) [[unlikely]]
            return dispatch_copy(data);
        run_callback("protocol data_received() failed",
                     [&] { static_cast<Protocol*>(protocol_.get())->data_received(data); });
    }
    void dispatch_copy(std::string_view data);
    bool keep_piece(uring::BufferRing& ring, std::uint16_t bid, std::string_view data);
    void release_pieces();
    // Bytes are being held for resume_reading: new ones queue behind them.
    bool holding() const { return !reading_ || npieces_ != 0 || !held_.empty(); }
    void deliver_buffered(std::size_t n);
    void on_eof();
    void deliver_held();
    void take_held_buffered();
    void submit_send();
    void on_send(int res, unsigned flags);
    void on_send_slow(int res);
    void after_send();
    void append(std::string_view data);
    bool hold_for_send(std::string_view data);
    void drop_held_send();
    // TransportBase
    void abort_after_failure() override;
    void after_lost() override;
    void released() override;
    bool wants_read() const { return reading_ && !closing_ && !eof_ && !held_eof_; }
    StreamProtocolBase* stream() const { return static_cast<StreamProtocolBase*>(protocol_.get()); }

    // The loop's buffer ring for stream receives (LoopCore::stream_ring, which is fixed once
    // the loop is set up), looked up once.
    uring::BufferRing& stream_ring_;
    std::unique_ptr<BaseProtocol> retired_;  // replaced protocol, freed once no op uses it
    // protocol_ is a BufferedProtocol (else a Protocol): set wherever protocol_ changes, so that
    // a delivery asks no virtual kind().
    bool buffered_ = false;
    RecvOp recv_op_{*this};
    SendOp send_op_{*this};

    // Reading.
    bool reading_ = true;      // not paused
    bool recv_armed_ = false;  // the receive op is in flight
    bool recv_multishot_ = false;
    bool eof_ = false;       // EOF delivered (or held)
    bool held_eof_ = false;  // EOF came while paused
    // Data completed while paused, delivered on resume: first ring pieces kept as they are (no
    // copy; a few, and bounded ring-wide by BufferRing::can_keep), then copies in held_. 16:
    // two readiness rounds of the epoll backend's 16 KiB pieces (8 each), which a pause can
    // still receive; with 4, held_ sometimes grew to a new peak late in a long stream.
    struct HeldPiece {
        const char* data;
        std::uint32_t size;
        std::uint16_t bid;
    };
    static constexpr std::size_t max_held_pieces = 16;
    std::array<HeldPiece, max_held_pieces> pieces_{};
    std::uint8_t npieces_ = 0;
    std::string held_;
    std::size_t held_buffered_ = 0;  // BufferedProtocol bytes completed while paused
    const std::byte* held_buffered_data_ = nullptr;  // where they are (the protocol's memory)
    std::string delivering_;                         // held_'s bytes while they are being delivered
    std::span<std::byte> target_;           // BufferedProtocol's buffer for the armed receive
    BaseProtocol* target_owner_ = nullptr;  // the protocol that handed out target_
    std::unique_ptr<char[]> own_buffer_;    // single-shot receive without a buffer ring

    // Writing.
    WriteRing wbuf_;  // what write() copied, not sent yet (behind the held writes)
    SendObserver* send_observer_ = nullptr;
    bool send_inflight_ = false;
    std::uint64_t sends_ = 0;
    WriteBarrier* barrier_ = nullptr;
    std::size_t barrier_bytes_ = 0;  // bytes written before the barrier, not yet sent
    // No copy for an echo: while data_received runs on ring bytes (cur_*), a write() of bytes
    // inside them with nothing queued keeps the ring buffer (BufferRing::keep, so it is not
    // given back to the kernel, incremental or not) and sends from it; the buffer is released
    // once the send has taken every byte, or when the write buffer is dropped (abort, error).
    // Held writes are the front of the write buffer, oldest first, up to max_held_sends per
    // connection while nothing copied is queued (once a write is copied, what follows is copied
    // behind it until wbuf_ drains); ring-wide, BufferRing::can_keep bounds the buffers
    // kept (half the ring, shared with paused readers); over either cap, write() copies.
    struct HeldSend {
        const char* data;
        std::uint32_t size;
        std::uint32_t off;  // bytes already sent
        std::uint16_t bid;
    };
    std::array<HeldSend, max_held_sends> held_sends_{};
    std::uint8_t nheld_ = 0;
    const char* cur_data_ = nullptr;  // the ring bytes being delivered, or null
    std::uint32_t cur_size_ = 0;
    std::uint16_t cur_bid_ = 0;
    std::uint64_t held_writes_ = 0;

    // Closing (the rest of the state is TransportBase's).
    bool shut_wr_ = false;
    std::uint32_t ignored_writes_ = 0;  // write() calls dropped while closing
    Callback lost_hook_;
};

}  // namespace aioring::detail
