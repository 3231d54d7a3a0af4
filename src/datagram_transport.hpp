// SPDX-License-Identifier: Apache-2.0
// Datagram transport over a UDP or Unix datagram socket: multishot recvmsg into the loop's
// provided-buffer ring, queued datagrams sent as sendmsg batches, asyncio's flow control.
#pragma once

#include <aioring/datagram.hpp>
#include <aioring/loop.hpp>

#include <sys/uio.h>

#include <memory>
#include <string>
#include <vector>

#include "src/loop_core.hpp"
#include "src/transport_base.hpp"
#include "src/write_flow.hpp"

namespace aioring::detail {

class DatagramSocketTransport final : public DatagramTransport,
                                      public Flushable,
                                      public Rearmable,
                                      public TransportBase,
                                      public std::enable_shared_from_this<DatagramSocketTransport> {
public:
    // Takes ownership of `fd`. A connected socket's peer becomes the remote address.
    DatagramSocketTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol);
    ~DatagramSocketTransport() override;

    // Schedules connection_made (then receiving); `on_made` runs right after it.
    void start(Callback on_made = {});

    // BaseTransport
    void close() override;
    bool is_closing() const override { return closing_; }
    std::any get_extra_info(std::string_view name, std::any default_value) const override;
    void set_protocol(std::unique_ptr<BaseProtocol> protocol) override;
    BaseProtocol* get_protocol() const override { return protocol_.get(); }
    EventLoop& get_loop() const override { return core_.loop; }
    // DatagramTransport
    using DatagramTransport::sendto;
    void sendto(std::string_view data) override;
    void sendto(std::string_view data, const SocketAddress& addr) override;
    void abort() override;
    std::size_t get_write_buffer_size() const override { return flow_.size(); }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return {flow_.low(), flow_.high()};
    }
    void set_write_buffer_limits(std::optional<std::size_t> high,
                                 std::optional<std::size_t> low) override;

    // Flushable / Rearmable
    void flush() override;
    void rearm() override;
    void loop_closed() override;

private:
    struct RecvOp final : uring::Op {
        DatagramSocketTransport& t;
        explicit RecvOp(DatagramSocketTransport& tr) : t(tr) {}
        void complete(int res, unsigned flags) override { t.on_recv(res, flags); }
    };
    // One queued datagram and the sendmsg that carries it. Slots are reused (their string keeps
    // its capacity), so steady-state sending allocates nothing.
    struct Slot final : uring::Op {
        DatagramSocketTransport& t;
        std::string data;
        SocketAddress addr;
        msghdr msg{};
        iovec iov{};
        int res = 0;
        bool done = false;  // completed, not yet consumed
        explicit Slot(DatagramSocketTransport& tr) : t(tr) {}
        void complete(int r, unsigned) override { t.on_send(*this, r); }
    };

    void arm_recv();
    void cancel_recv();
    void on_recv(int res, unsigned flags);
    void deliver(std::string_view data, const SocketAddress& addr);
    void receive_error(int err);
    void queue(std::string_view data, const SocketAddress* addr);
    Slot& slot_at(std::size_t i) { return *slots_[(head_ + i) % slots_.size()]; }
    void pop_front();
    void submit_chain();
    void on_send(Slot& slot, int res);
    void error_received(std::error_code ec);
    void force_close(std::error_code ec);
    // TransportBase
    void abort_after_failure() override;
    bool busy() const override {
        return recv_armed_ || chain_pending_ != 0 || flush_scheduled || rearm_scheduled;
    }
    void released() override;
    DatagramProtocol* datagram() const { return static_cast<DatagramProtocol*>(protocol_.get()); }

    int fd_;
    RecvOp recv_op_{*this};
    SocketAddress peername_;  // the remote address of a connected endpoint
    SocketAddress sockname_;

    // Receiving.
    bool recv_armed_ = false;
    bool recv_multishot_ = false;
    msghdr recv_msg_{};
    iovec recv_iov_{};
    SocketAddress recv_addr_;
    std::unique_ptr<char[]> own_buffer_;  // single-shot receive without multishot
    std::size_t receive_capacity_ = 0;    // largest datagram received whole

    // Sending: a circular queue of slots; the first `chain_` belong to the chain in flight.
    std::vector<std::unique_ptr<Slot>> slots_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
    std::size_t chain_ = 0;          // slots submitted as the current chain
    std::size_t chain_pending_ = 0;  // of those, completions still to come
    bool chain_failed_ = false;      // a datagram of the chain failed...
    bool chain_broken_ = false;      // ...and the rest were cancelled: resubmit them
    bool link_sends_ = false;        // Unix datagram sockets: chains are linked
    WriteFlow flow_{*this};  // queued bytes (each datagram + datagram_overhead), pause/resume

    // Closing (the rest of the state is TransportBase's).
    bool fd_closed_ = false;
};

}  // namespace aioring::detail
