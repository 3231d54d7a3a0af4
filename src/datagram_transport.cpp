// SPDX-License-Identifier: Apache-2.0
// Datagram transport (create_datagram_endpoint itself: src/loop_datagram.cpp): multishot
// recvmsg into the loop's provided-buffer ring (single-shot recvmsg into an own buffer without
// multishot), queued datagrams sent as batches of sendmsg (linked for Unix sockets, so that they
// leave in order), and asyncio's close/abort ordering and flow control.
#include "src/datagram_transport.hpp"

#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <tuple>

#include "src/op_awaiter.hpp"

namespace aioring::detail {

namespace {
constexpr std::size_t max_chain = 64;    // datagrams per sendmsg chain
constexpr std::size_t slots_keep = 256;  // idle slots kept for reuse
constexpr std::size_t slot_capacity_keep = 64 * 1024 + 1024;

// Errors that say the socket itself is unusable; anything else concerns one datagram and goes
// to error_received (asyncio passes every OSError there).
bool is_fatal(int err) { return err == EBADF || err == ENOTSOCK || err == EFAULT; }

bool same_address(const SocketAddress& a, const SocketAddress& b) {
    if (a.family() != b.family()) return false;
    switch (a.family()) {
        case AF_INET: {
            auto* x = reinterpret_cast<const sockaddr_in*>(a.get());
            auto* y = reinterpret_cast<const sockaddr_in*>(b.get());
            return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        case AF_INET6: {
            auto* x = reinterpret_cast<const sockaddr_in6*>(a.get());
            auto* y = reinterpret_cast<const sockaddr_in6*>(b.get());
            return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                   std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
        }
        case AF_UNIX:
            return a.host() == b.host();
    }
    return a == b;
}
}  // namespace

DatagramSocketTransport::DatagramSocketTransport(LoopCore& core, int fd,
                                                 std::unique_ptr<BaseProtocol> protocol)
    : TransportBase(core, *this, std::move(protocol)), fd_(fd) {
    if (!protocol_) throw std::invalid_argument("protocol factory returned no protocol");
    if (protocol_->kind() != BaseProtocol::Kind::datagram)
        throw std::invalid_argument("a datagram transport needs a DatagramProtocol");
    peername_ = peername_of(fd_);
    sockname_ = sockname_of(fd_);
    // The same limit with and without the buffer ring, so that what counts as truncated does
    // not depend on the kernel: a ring buffer holds the recvmsg header and the name too.
    const std::size_t ring_size = core_.buffers.buffer_size();
    const std::size_t header = sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_storage);
    receive_capacity_ = ring_size > header ? ring_size - header : ring_size;
    link_sends_ = sockname_.family() == AF_UNIX;
}

DatagramSocketTransport::~DatagramSocketTransport() {
    if (!fd_closed_) ::close(fd_);
}

void DatagramSocketTransport::start(Callback on_made) {
    adopt(shared_from_this());
    core_.post([this, on_made = std::move(on_made)]() mutable {
        made_ = true;
        run_callback("protocol connection_made() failed",
                     [&] { datagram()->connection_made(*this); });
        if (!closing_ && !recv_armed_) arm_recv();
        if (on_made) on_made();
    });
}

// ---- receiving ------------------------------------------------------------------------------

void DatagramSocketTransport::arm_recv() {
    assert(!recv_armed_);
    io_uring_sqe* s = core_.ring.sqe();
    recv_msg_ = msghdr{};
    if (core_.buffers.ok() && core_.ring.features().multishot_recv) {
        // The kernel writes an io_uring_recvmsg_out, then the name (msg_namelen bytes
        // reserved), then the payload into each ring buffer: one datagram per buffer.
        recv_msg_.msg_namelen = sizeof(sockaddr_storage);
        io_uring_prep_recvmsg_multishot(s, fd_, &recv_msg_, 0);
        s->flags |= IOSQE_BUFFER_SELECT;
        s->buf_group = core_.buffers.group();
        recv_multishot_ = true;
    } else {
        if (!own_buffer_) own_buffer_ = std::make_unique<char[]>(receive_capacity_);
        recv_iov_ = iovec{own_buffer_.get(), receive_capacity_};
        recv_msg_.msg_name = recv_addr_.get();
        recv_msg_.msg_namelen = sizeof(sockaddr_storage);
        recv_msg_.msg_iov = &recv_iov_;
        recv_msg_.msg_iovlen = 1;
        io_uring_prep_recvmsg(s, fd_, &recv_msg_, 0);
        recv_multishot_ = false;
    }
    io_uring_sqe_set_data(s, static_cast<uring::Op*>(&recv_op_));
    recv_armed_ = true;
}

void DatagramSocketTransport::cancel_recv() {
    if (!recv_armed_) return;
    core_.ring.cancel(recv_op_);
}

void DatagramSocketTransport::on_recv(int res, unsigned flags) {
    if (!(flags & IORING_CQE_F_MORE)) recv_armed_ = false;
    if (flags & IORING_CQE_F_BUFFER) [[likely]] {
        const std::uint16_t bid = uring::BufferRing::buffer_id(flags);
        char* buf = core_.buffers.data(bid);
        if (res >= 0) {
            if (auto* out = io_uring_recvmsg_validate(buf, res, &recv_msg_)) {
                if (out->flags & MSG_TRUNC) [[unlikely]] {
                    if (!closing_) error_received(std::make_error_code(std::errc::message_size));
                } else {
                    const socklen_t namelen =
                        std::min<socklen_t>(out->namelen, sizeof(sockaddr_storage));
                    const SocketAddress from(
                        static_cast<const sockaddr*>(io_uring_recvmsg_name(out)), namelen);
                    const auto* payload =
                        static_cast<const char*>(io_uring_recvmsg_payload(out, &recv_msg_));
                    deliver(std::string_view(payload,
                                             io_uring_recvmsg_payload_length(out, res, &recv_msg_)),
                            from);
                }
            }
        }
        core_.buffers.give_back(bid);
    } else if (res >= 0 && !recv_multishot_) {
        // Single-shot: an empty datagram completes with 0, which is not EOF here.
        if (recv_msg_.msg_flags & MSG_TRUNC) [[unlikely]] {
            if (!closing_) error_received(std::make_error_code(std::errc::message_size));
        } else {
            recv_addr_.length =
                std::min<socklen_t>(recv_msg_.msg_namelen, sizeof(sockaddr_storage));
            deliver(std::string_view(own_buffer_.get(), static_cast<std::size_t>(res)), recv_addr_);
        }
    } else if (res == -ENOBUFS) {
        // The multishot ended because the ring ran dry; re-arm once this batch of completions
        // has handed its buffers back. The datagrams wait in the socket meanwhile.
        ++core_.buffers.exhaustions;
        if (!closing_) core_.want_rearm(this);
    } else if (res < 0 && res != -ECANCELED && res != -EINTR) {
        receive_error(-res);
    }
    if (!recv_armed_) {
        if (!closing_ && !rearm_scheduled) arm_recv();
        maybe_release();
    }
}

void DatagramSocketTransport::deliver(std::string_view data, const SocketAddress& addr) {
    if (closing_) return;
    run_callback("protocol datagram_received() failed",
                 [&] { datagram()->datagram_received(data, addr); });
}

void DatagramSocketTransport::receive_error(int err) {
    if (closing_) return;
    if (is_fatal(err)) [[unlikely]] {
        force_close(std::error_code(err, std::system_category()));
        return;
    }
    // E.g. ECONNREFUSED on a connected endpoint after an ICMP port unreachable: reported, and
    // receiving goes on.
    error_received(std::error_code(err, std::system_category()));
}

void DatagramSocketTransport::rearm() {
    if (!closing_ && !recv_armed_) arm_recv();
    maybe_release();
}

void DatagramSocketTransport::error_received(std::error_code ec) {
    run_callback("protocol error_received() failed", [&] { datagram()->error_received(ec); });
}

// ---- sending --------------------------------------------------------------------------------

void DatagramSocketTransport::sendto(std::string_view data) {
    if (peername_.empty())
        throw std::invalid_argument(
            "sendto() without an address needs an endpoint with a remote address");
    if (closing_) return;
    queue(data, nullptr);
}

void DatagramSocketTransport::sendto(std::string_view data, const SocketAddress& addr) {
    if (!peername_.empty()) {
        if (!same_address(addr, peername_))
            throw std::invalid_argument("Invalid address: must be the remote address " +
                                        peername_.to_string() + ", not " + addr.to_string());
        if (closing_) return;
        queue(data, nullptr);
        return;
    }
    if (addr.empty()) throw std::invalid_argument("sendto() to an empty address");
    if (closing_) return;
    queue(data, &addr);
}

void DatagramSocketTransport::queue(std::string_view data, const SocketAddress* addr) {
    if (count_ == slots_.size()) [[unlikely]] {
        // Grow the circular queue, keeping order; slots in flight keep their address.
        std::vector<std::unique_ptr<Slot>> grown;
        grown.reserve(std::max<std::size_t>(16, 2 * slots_.size()));
        for (std::size_t i = 0; i < count_; ++i)
            grown.push_back(std::move(slots_[(head_ + i) % slots_.size()]));
        while (grown.size() < grown.capacity()) grown.push_back(std::make_unique<Slot>(*this));
        slots_ = std::move(grown);
        head_ = 0;
    }
    Slot& s = slot_at(count_);
    s.data.assign(data);
    if (addr)
        s.addr = *addr;
    else
        s.addr.length = 0;
    ++count_;
    core_.want_flush(this);
    flow_.add(data.size() + datagram_overhead);
}

void DatagramSocketTransport::pop_front() {
    Slot& s = *slots_[head_];
    if (s.data.capacity() > slot_capacity_keep) s.data = std::string();
    head_ = (head_ + 1) % slots_.size();
    --count_;
}

void DatagramSocketTransport::flush() {
    if (chain_pending_ == 0 && count_ > chain_ && !lost_scheduled_) submit_chain();
    maybe_release();
}

void DatagramSocketTransport::submit_chain() {
    assert(chain_pending_ == 0);
    // Unix datagram sockets are reliable and ordered, and a full receiver makes sends wait:
    // their chain is linked so that the datagrams leave in order even then. UDP promises no
    // order and its sends hardly ever wait, so they go unlinked (each linked send costs the
    // kernel a task-work round trip: about 20% more CPU per echoed datagram); in-order issue
    // at submission keeps them in order anyway. A linked chain must not straddle an SQ flush:
    // that would split it into two chains racing each other.
    std::size_t n = std::min(count_, max_chain);
    const std::size_t room = core_.ring.sq_space_left();
    if (room != 0)
        n = std::min(n, room);
    else
        n = 1;
    for (std::size_t i = 0; i < n; ++i) {
        Slot& s = slot_at(i);
        s.iov = iovec{s.data.data(), s.data.size()};
        s.msg = msghdr{};
        if (s.addr.length != 0) {
            s.msg.msg_name = s.addr.get();
            s.msg.msg_namelen = s.addr.length;
        }
        s.msg.msg_iov = &s.iov;
        s.msg.msg_iovlen = 1;
        s.res = 0;
        s.done = false;
        io_uring_sqe* sqe = core_.ring.sqe();
        io_uring_prep_sendmsg(sqe, fd_, &s.msg, MSG_NOSIGNAL);
        if (link_sends_ && i + 1 < n) sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data(sqe, static_cast<uring::Op*>(&s));
    }
    chain_ = n;
    chain_pending_ = n;
}

void DatagramSocketTransport::on_send(Slot& slot, int res) {
    assert(chain_pending_ != 0);
    slot.res = res;
    slot.done = true;
    --chain_pending_;
    if (lost_scheduled_) {  // aborted: the queue was dropped, only the memory was kept
        if (chain_pending_ == 0) {
            head_ = count_ = chain_ = 0;
            maybe_release();
        }
        return;
    }
    // Consume completed datagrams from the front, in queue order, as they complete (flow
    // control sees each one). A failure cancels the rest of a linked chain: those stay queued
    // and go out again once the whole chain has completed.
    std::size_t removed = 0;
    while (chain_ != 0 && !chain_broken_ && slots_[head_]->done) {
        Slot& s = *slots_[head_];
        const int r = s.res;
        if (r == -ECANCELED && chain_failed_) {
            chain_broken_ = true;
            break;
        }
        s.done = false;
        removed += s.data.size() + datagram_overhead;
        pop_front();
        --chain_;
        if (r < 0) [[unlikely]] {
            chain_failed_ = true;
            if (is_fatal(-r))
                force_close(std::error_code(-r, std::system_category()));
            else if (!closing_)
                error_received(std::error_code(-r, std::system_category()));
            if (lost_scheduled_) {  // aborted from error_received: everything is dropped
                maybe_release();
                return;
            }
        }
    }
    if (removed != 0) flow_.sub(removed);
    if (lost_scheduled_) {  // aborted from resume_writing
        maybe_release();
        return;
    }
    if (chain_pending_ != 0) return;
    chain_ = 0;
    chain_failed_ = chain_broken_ = false;
    if (count_ != 0) {
        submit_chain();
        return;
    }
    if (slots_.size() > slots_keep) {
        slots_.resize(slots_keep);
        head_ = 0;
    }
    if (closing_) schedule_connection_lost({});
}

void DatagramSocketTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                                      std::optional<std::size_t> low) {
    flow_.set_limits(high, low);
}

// ---- closing --------------------------------------------------------------------------------

void DatagramSocketTransport::close() {
    if (closing_) return;
    closing_ = true;
    cancel_recv();
    if (count_ == 0 && chain_pending_ == 0) schedule_connection_lost({});
    // Otherwise the queue drains first (flush / on_send), then connection_lost.
}

void DatagramSocketTransport::abort() { force_close({}); }

void DatagramSocketTransport::force_close(std::error_code ec) {
    if (lost_scheduled_) return;
    closing_ = true;
    flow_.set(0);
    if (chain_pending_ == 0) {
        head_ = count_ = chain_ = 0;
    } else {
        // Datagrams waiting on a full receiver would hold the transport forever. A cancel
        // misses a linked send the kernel has not issued yet (it is queued as task work under
        // DEFER_TASKRUN); the shutdown makes that one fail with EPIPE once issued, and wakes
        // one waiting in poll (EPOLLHUP).
        ::shutdown(fd_, SHUT_RDWR);
        for (std::size_t i = 0; i < chain_; ++i) {
            core_.ring.cancel(slot_at(i));
        }
    }
    cancel_recv();
    schedule_connection_lost(ec);
}

void DatagramSocketTransport::abort_after_failure() {
    force_close(std::make_error_code(std::errc::connection_aborted));
}

void DatagramSocketTransport::released() {
    // The fd closes only once connection_lost has returned and no op (or pending flush/re-arm)
    // can still refer to this endpoint.
    if (!fd_closed_) {
        fd_closed_ = true;
        ::close(fd_);
    }
}

void DatagramSocketTransport::loop_closed() {
    // The loop closed with this endpoint open: every operation has completed or been cancelled
    // and no callback runs any more (as for stream transports).
    recv_armed_ = false;
    chain_pending_ = chain_ = count_ = head_ = 0;
    flush_scheduled = false;
    rearm_scheduled = false;
    closing_ = lost_scheduled_ = lost_done_ = detached_ = true;
    flow_.set(0);
    if (!fd_closed_) {
        fd_closed_ = true;
        ::close(fd_);
    }
}

// ---- the rest -------------------------------------------------------------------------------

std::any DatagramSocketTransport::get_extra_info(std::string_view name,
                                                 std::any default_value) const {
    if (name == "peername") return peername_.empty() ? default_value : std::any(peername_);
    if (name == "sockname") return sockname_.empty() ? default_value : std::any(sockname_);
    if (name == "socket") return fd_closed_ ? default_value : std::any(fd_);
    return default_value;
}

void DatagramSocketTransport::set_protocol(std::unique_ptr<BaseProtocol> protocol) {
    if (!protocol) throw std::invalid_argument("set_protocol(nullptr)");
    if (protocol->kind() != BaseProtocol::Kind::datagram)
        throw std::invalid_argument("a datagram transport needs a DatagramProtocol");
    if (detached_) {  // the loop is gone: nothing runs that could still use the old one
        protocol_ = std::move(protocol);
        return;
    }
    // The old protocol may be the caller (set_protocol from inside a callback): it is freed
    // once that callback has returned.
    retire(std::exchange(protocol_, std::move(protocol)));
}

}  // namespace aioring::detail
