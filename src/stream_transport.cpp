// SPDX-License-Identifier: Apache-2.0
// StreamTransport: multishot receive into the loop's provided-buffer ring (or single-shot into
// a BufferedProtocol's memory), one send in flight (a plain send for one buffer, which may be a
// received ring buffer held for an echo; sendmsg for several), and asyncio's
// close/abort/write_eof ordering and flow control. The kinds: src/socket_transport.cpp and
// src/pipe_transport.cpp.
#include "src/stream_transport.hpp"

#include <fmt/core.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <tuple>

namespace aioring::detail {

namespace {
constexpr std::size_t receive_size = 64 * 1024;  // single-shot receive / BufferedProtocol hint
}  // namespace

StreamTransport::StreamTransport(LoopCore& core, int fd, std::unique_ptr<BaseProtocol> protocol,
                                 bool socket)
    : TransportBase(core, *this, std::move(protocol)),
      fd_(fd),
      socket_(socket),
      stream_ring_(core.stream_ring()) {
    if (!protocol_) throw std::invalid_argument("protocol factory returned no protocol");
    if (protocol_->kind() != BaseProtocol::Kind::stream &&
        protocol_->kind() != BaseProtocol::Kind::buffered)
        throw std::invalid_argument("a stream transport needs a Protocol or a BufferedProtocol");
    buffered_ = protocol_->kind() == BaseProtocol::Kind::buffered;
}

StreamTransport::~StreamTransport() {
    if (!detached_) {  // once the loop is gone, so is its ring
        release_pieces();
        drop_held_send();
    }
    if (!fd_closed_) ::close(fd_);
}

void StreamTransport::start(Callback on_made) {
    adopt(shared_from_this());
    core_.post([this, on_made = std::move(on_made)]() mutable {
        made_ = true;
        run_callback("protocol connection_made() failed",
                     [&] { stream()->connection_made(*this); });
        start_receiving();
        if (on_made) on_made();
    });
}

// ---- reading -------------------------------------------------------------------------------

void StreamTransport::arm_recv() {
    assert(!recv_armed_);
    std::span<std::byte> buf;
    const bool buffered = buffered_;
    if (buffered) {
        if (!run_callback("protocol get_buffer() failed", [&] {
                buf = static_cast<BufferedProtocol*>(protocol_.get())->get_buffer(receive_size);
                if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
            }))
            return;
        // get_buffer may have paused reading or closed the transport: then nothing is armed
        // (resume_reading asks for a buffer again).
        if (!wants_read() || recv_armed_) return;
    }
    io_uring_sqe* s = core_.ring.sqe();
    if (buffered) {
        target_ = buf;
        target_owner_ = protocol_.get();
        prep_receive(s, buf.data(), buf.size());
        recv_multishot_ = false;
    } else if (socket_ && stream_ring_.ok() && core_.ring.features().multishot_recv) {
        io_uring_prep_recv_multishot(s, fd_, nullptr, 0, 0);
        s->flags |= IOSQE_BUFFER_SELECT;
        s->buf_group = stream_ring_.group();
        recv_multishot_ = true;
    } else {
        if (!own_buffer_) own_buffer_ = std::make_unique<char[]>(receive_size);
        prep_receive(s, own_buffer_.get(), receive_size);
        recv_multishot_ = false;
    }
    io_uring_sqe_set_data(s, static_cast<uring::Op*>(&recv_op_));
    recv_armed_ = true;
}

void StreamTransport::cancel_recv() {
    if (!recv_armed_) return;
    core_.ring.cancel(recv_op_);
}

void StreamTransport::on_recv(int res, unsigned flags) {
    const bool more = (flags & IORING_CQE_F_MORE) != 0;
    if (!more) recv_armed_ = false;
    if (res > 0) [[likely]] {
        if (flags & IORING_CQE_F_BUFFER) {
            uring::BufferRing& ring = stream_ring_;
            const auto piece = ring.take(flags, static_cast<unsigned>(res));
            const std::string_view data(piece.data, static_cast<std::size_t>(res));
            if (!holding()) [[likely]] {
                if (!closing_ && !eof_) {
                    // write() may send straight from these bytes (hold_for_send).
                    cur_data_ = piece.data;
                    cur_size_ = static_cast<std::uint32_t>(res);
                    cur_bid_ = piece.bid;
                    dispatch(data);
                    cur_data_ = nullptr;
                }
            } else if (!keep_piece(ring, piece.bid, data)) {
                deliver(data);
            }
            if (piece.last) ring.finish(piece.bid);
        } else if (own_buffer_ && target_.empty()) {
            deliver(std::string_view(own_buffer_.get(), static_cast<std::size_t>(res)));
        } else {
            deliver_buffered(static_cast<std::size_t>(res));
        }
    } else if (res == 0) {
        if (flags & IORING_CQE_F_BUFFER) {
            uring::BufferRing& ring = stream_ring_;
            if (const auto piece = ring.take(flags, 0); piece.last) ring.finish(piece.bid);
        }
        on_eof();
    } else if (res == -ENOBUFS) {
        // The multishot ended because the ring ran dry; this is not EOF. Re-arm once this
        // batch of completions has handed its buffers back.
        ++stream_ring_.exhaustions;
        if (wants_read()) core_.want_rearm(this);
    } else if (res != -ECANCELED && res != -EINTR) {
        if (!closing_) force_close(std::error_code(-res, std::system_category()));
    }
    if (npieces_ != 0 && closing_) release_pieces();  // never delivered now
    if (!recv_armed_) {
        target_ = {};
        target_owner_ = nullptr;
        retired_.reset();  // a replaced protocol's buffer is no longer in use
        if (wants_read() && !rearm_scheduled && held_.empty() && npieces_ == 0 &&
            held_buffered_ == 0)
            arm_recv();
        maybe_release();
    }
}

bool StreamTransport::keep_piece(uring::BufferRing& ring, std::uint16_t bid,
                                 std::string_view data) {
    // Completed after pause_reading: the ring's bytes are held as they are, while few are and
    // nothing copied is queued before them; the buffer goes back once they are delivered.
    if (closing_ || eof_ || !held_.empty() || npieces_ == max_held_pieces || !ring.can_keep(bid))
        return false;
    ring.keep(bid);
    pieces_[npieces_++] = HeldPiece{data.data(), static_cast<std::uint32_t>(data.size()), bid};
    return true;
}

void StreamTransport::release_pieces() {
    for (std::size_t i = 0; i < npieces_; ++i) stream_ring_.release(pieces_[i].bid);
    npieces_ = 0;
}

void StreamTransport::deliver(std::string_view data) {
    if (closing_ || eof_) return;
    if (holding()) {
        held_.append(data);  // completed after pause_reading: kept for resume_reading
        return;
    }
    dispatch(data);
}

void StreamTransport::dispatch_copy(std::string_view data) {
    // The protocol was switched to a BufferedProtocol: copy into its buffers.
    auto* bp = static_cast<BufferedProtocol*>(protocol_.get());
    while (!data.empty() && !closing_) {
        run_callback("protocol get_buffer()/buffer_updated() failed", [&] {
            auto buf = bp->get_buffer(data.size());
            if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
            std::size_t n = std::min(buf.size(), data.size());
            std::memcpy(buf.data(), data.data(), n);
            data.remove_prefix(n);
            bp->buffer_updated(n);
        });
    }
}

void StreamTransport::deliver_buffered(std::size_t n) {
    if (closing_ || eof_) return;
    if (target_owner_ != protocol_.get()) {
        // Received into the buffer of a protocol that has since been replaced.
        deliver(std::string_view(reinterpret_cast<const char*>(target_.data()), n));
        return;
    }
    if (!reading_) {
        held_buffered_ = n;
        held_buffered_data_ = target_.data();
        return;
    }
    run_callback("protocol buffer_updated() failed",
                 [&] { static_cast<BufferedProtocol*>(protocol_.get())->buffer_updated(n); });
}

void StreamTransport::on_eof() {
    if (closing_ || eof_) return;
    if (holding()) {
        held_eof_ = true;
        return;
    }
    eof_ = true;
    bool keep_open = false;
    if (!run_callback("protocol eof_received() failed",
                      [&] { keep_open = stream()->eof_received(); }))
        return;
    if (!keep_open || closes_at_eof()) close();
}

void StreamTransport::deliver_held() {
    // Runs from the loop after resume_reading: what completed while paused goes first, in order.
    if (!reading_ || closing_) return;
    if (held_buffered_ != 0) {
        std::size_t n = std::exchange(held_buffered_, 0);
        run_callback("protocol buffer_updated() failed",
                     [&] { static_cast<BufferedProtocol*>(protocol_.get())->buffer_updated(n); });
    }
    while (npieces_ != 0) {
        const HeldPiece p = pieces_[0];
        std::copy(pieces_.begin() + 1, pieces_.begin() + npieces_, pieces_.begin());
        --npieces_;
        if (!closing_ && !eof_) {
            cur_data_ = p.data;
            cur_size_ = p.size;
            cur_bid_ = p.bid;
            dispatch(std::string_view(p.data, p.size));
            cur_data_ = nullptr;
        }
        stream_ring_.release(p.bid);
        if (closing_) release_pieces();
        if (!reading_) return;  // paused again inside data_received
    }
    if (!held_.empty()) {
        // Both strings keep their capacity: pausing again and again allocates nothing.
        delivering_.swap(held_);
        deliver(delivering_);
        delivering_.clear();
        if (!reading_) return;  // paused again inside data_received
    }
    if (held_eof_) {
        held_eof_ = false;
        on_eof();
    }
    if (wants_read() && !recv_armed_) arm_recv();
}

void StreamTransport::take_held_buffered() {
    // Bytes received into a BufferedProtocol's memory while paused: the protocol is about to be
    // replaced, so they are copied out and go to the new one, first, on resume.
    if (held_buffered_ == 0) return;
    held_.insert(0, reinterpret_cast<const char*>(held_buffered_data_), held_buffered_);
    held_buffered_ = 0;
    held_buffered_data_ = nullptr;
}

void StreamTransport::pause_reading() {
    if (closing_ || !reading_) return;
    reading_ = false;
    // Stop the kernel from filling shared ring buffers for a reader that does not read; what
    // completes before the cancel lands is held.
    if (recv_multishot_) cancel_recv();
}

void StreamTransport::resume_reading() {
    if (closing_ || reading_) return;
    reading_ = true;
    if (!held_.empty() || npieces_ != 0 || held_buffered_ != 0 || held_eof_) {
        core_.post([self = shared_from_this()] { self->deliver_held(); });
    } else if (!recv_armed_ && wants_read()) {
        arm_recv();
    }
}

void StreamTransport::rearm() {
    if (wants_read() && !recv_armed_ && held_.empty() && npieces_ == 0) arm_recv();
    maybe_release();
}

// ---- writing -------------------------------------------------------------------------------

void StreamTransport::append(std::string_view data) { wbuf_.append(data, send_inflight_); }

void StreamTransport::refuse_write(const char* call) const {
    throw std::logic_error(fmt::format("Cannot call {}() after write_eof()", call));
}

// Inline in write(), its only caller: an echo pays no call for it.
inline bool StreamTransport::hold_for_send(std::string_view data) {
    // Bytes of the ring buffer being delivered, with nothing queued before them: keep the
    // buffer and send from it (see held_sends_). The kernel does not reuse a kept buffer: with
    // incremental consumption it may still be filling the rest of it (no Piece::last yet), but
    // only after these bytes, and it is given back only once both the kernel is done with it
    // (finish) and this send has released it.
    const auto p = reinterpret_cast<std::uintptr_t>(data.data());
    const auto base = reinterpret_cast<std::uintptr_t>(cur_data_);
    if (p < base || p + data.size() > base + cur_size_) return false;
    if (!wbuf_.empty() || nheld_ == max_held_sends) return false;  // per-connection cap
    uring::BufferRing& ring = stream_ring_;
    if (!ring.can_keep(cur_bid_)) return false;  // ring-wide cap: copy instead
    ring.keep(cur_bid_);
    held_sends_[nheld_++] =
        HeldSend{data.data(), static_cast<std::uint32_t>(data.size()), 0, cur_bid_};
    ++held_writes_;
    return true;
}

void StreamTransport::write(std::string_view data) {
    if (eof_requested_) [[unlikely]]
        refuse_write("write");
    if (data.empty()) return;
    if (closing_) [[unlikely]] {
        core_.ignored_write(ignored_writes_);
        return;
    }
    if (cur_data_ == nullptr || barrier_ || !hold_for_send(data))
        append(data);  // none past a sendfile
    core_.want_flush(this);
    flow_.add(data.size());
}

void StreamTransport::drop_held_send() {
    // Every held write goes back (the write buffer is dropped).
    while (nheld_ != 0) stream_ring_.release(held_sends_[--nheld_].bid);
}

// The bytes are copied like any others: one write buffer, reused, rather than a queue of
// strings that each allocate.
void StreamTransport::write(std::string&& data) { write(std::string_view(data)); }

void StreamTransport::writelines(std::span<const std::string_view> chunks) {
    for (std::string_view c : chunks) write(c);
}

void StreamTransport::flush() {
    if (!send_inflight_ && flow_.size() != 0 && !lost_scheduled_ &&
        (!barrier_ || barrier_bytes_ != 0))
        submit_send();
    maybe_release();
}

void StreamTransport::submit_send() {
    io_uring_sqe* s;
    if (nheld_ == 0) [[likely]] {
        // The write buffer's front: one span, or two where it wraps. Nothing past a write
        // barrier.
        const std::size_t n = wbuf_.front(iov_.data(), barrier_ ? barrier_bytes_ : SIZE_MAX);
        s = core_.ring.sqe();
        if (n == 1 && socket_) [[likely]]  // one buffer: a plain send, no msghdr to copy in
            io_uring_prep_send(s, fd_, iov_[0].iov_base, iov_[0].iov_len, MSG_NOSIGNAL);
        else
            prep_send_iov(s, n);
    } else if (nheld_ == 1 && socket_) [[likely]] {
        const HeldSend& h = held_sends_[0];
        s = core_.ring.sqe();
        io_uring_prep_send(s, fd_, h.data + h.off, h.size - h.off, MSG_NOSIGNAL);
    } else {
        // The held writes, and nothing else: the write buffer behind them goes next time.
        for (std::size_t i = 0; i < nheld_; ++i) {
            const HeldSend& h = held_sends_[i];
            iov_[i] = iovec{const_cast<char*>(h.data + h.off), h.size - h.off};
        }
        s = core_.ring.sqe();
        prep_send_iov(s, nheld_);
    }
    io_uring_sqe_set_data(s, static_cast<uring::Op*>(&send_op_));
    send_inflight_ = true;
    ++sends_;
}

void StreamTransport::on_send(int res, unsigned) {
    send_inflight_ = false;
    // The echo's case: one held write, sent whole, with nothing copied behind it (so the write
    // buffer has nothing to settle either), no barrier, no observer and no abort. Its buffer
    // goes back and the count drops; then the common tail (resume_writing may have written or
    // closed meanwhile).
    if (nheld_ == 1 && res > 0 && wbuf_.empty() && !barrier_ && !send_observer_ &&
        !lost_scheduled_ &&
        static_cast<std::uint32_t>(res) == held_sends_[0].size - held_sends_[0].off) [[likely]] {
        nheld_ = 0;
        stream_ring_.release(held_sends_[0].bid);
        flow_.sub(static_cast<std::size_t>(res));
        after_send();
        return;
    }
    on_send_slow(res);
}

// Out of line, so that the fast path above saves no registers for it.
[[gnu::noinline]] void StreamTransport::on_send_slow(int res) {
    if (lost_scheduled_) {  // aborted: the buffer was dropped, only the memory was kept
        wbuf_.clear();
        drop_held_send();
        maybe_release();
        return;
    }
    if (res < 0) {
        force_close(std::error_code(-res, std::system_category()));
        maybe_release();
        return;
    }
    bool barrier_reached = false;
    if (barrier_ && barrier_bytes_ != 0) [[unlikely]] {
        barrier_bytes_ -= std::min(barrier_bytes_, static_cast<std::size_t>(res));
        barrier_reached = barrier_bytes_ == 0;
    }
    // Consume what was sent; a short send leaves the rest at the front, sent before anything
    // newer.
    std::size_t sent = static_cast<std::size_t>(res);
    // The held writes first (a send from them sends from nothing else): each one's buffer
    // goes back once every byte of it has been taken; a short send goes again from where it
    // stopped. Held writes made while it was in flight are behind them.
    while (sent != 0 && nheld_ != 0) {
        HeldSend& h = held_sends_[0];
        const std::size_t left = h.size - h.off;
        if (sent < left) {
            h.off += static_cast<std::uint32_t>(sent);
            sent = 0;
            break;
        }
        sent -= left;
        const std::uint16_t bid = h.bid;
        std::copy(held_sends_.begin() + 1, held_sends_.begin() + nheld_, held_sends_.begin());
        --nheld_;
        stream_ring_.release(bid);
    }
    wbuf_.consume(sent);
    wbuf_.settle();
    flow_.sub(static_cast<std::size_t>(res));
    if (send_observer_) [[unlikely]]
        send_observer_->bytes_sent(static_cast<std::size_t>(res));
    if (barrier_) [[unlikely]] {
        if (lost_scheduled_) return;
        if (barrier_reached)
            barrier_->writes_before_sent();
        else if (barrier_bytes_ != 0)
            submit_send();
        return;
    }
    after_send();
}

void StreamTransport::after_send() {
    // A completed send was counted out: the next one, or what close() and write_eof() wait for.
    if (flow_.size() != 0) {
        if (!lost_scheduled_) submit_send();
        return;
    }
    if (closing_) {
        schedule_connection_lost({});
    } else if (eof_requested_ && !shut_wr_) {
        shut_wr_ = true;
        shut_write();
    }
}

void StreamTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                              std::optional<std::size_t> low) {
    flow_.set_limits(high, low);
}

void StreamTransport::write_eof() {
    if (closing_ || eof_requested_) return;
    eof_requested_ = true;
    if (flow_.size() == 0 && !send_inflight_ && !barrier_) {
        shut_wr_ = true;
        shut_write();
    }
}

void StreamTransport::write_eof_closes() {
    if (closing_ || eof_requested_) return;
    eof_requested_ = true;
    close();
}

// ---- closing -------------------------------------------------------------------------------

void StreamTransport::close() {
    if (closing_) return;
    closing_ = true;
    stop_receiving();
    if (flow_.size() == 0 && !send_inflight_ && !barrier_) schedule_connection_lost({});
}

void StreamTransport::abort() { force_close({}); }

void StreamTransport::force_close(std::error_code ec) {
    if (lost_scheduled_) return;
    closing_ = true;
    flow_.set(0);  // dropped; the bytes stay until the in-flight send lets go of them
    if (!send_inflight_) {
        wbuf_.clear();
        drop_held_send();
    }
    stop_receiving();
    if (send_inflight_) {
        // asyncio: the buffered data is lost. The in-flight send waits in the kernel for room
        // and, under COOP_TASKRUN or without flags, is retried as soon as the peer reads, even
        // before the loop runs again. So no byte the kernel has not accepted yet may go after
        // abort() returns: a socket is shut for writing at once (a retry then fails with
        // EPIPE; what the kernel already holds still goes, then EOF, as a close would do), and
        // the cancel is submitted now rather than at the next loop iteration (a pipe has no
        // shutdown; the cancel disarms its waiting write).
        shut_write();
        core_.ring.cancel(send_op_);
        core_.ring.submit();  // an error (EBUSY): the next iteration submits it
    }
    schedule_connection_lost(ec);
    if (barrier_) barrier_->transport_aborted(ec);
}

void StreamTransport::set_write_barrier(WriteBarrier* b) {
    assert(!barrier_ && !lost_scheduled_);
    barrier_ = b;
    barrier_bytes_ = flow_.size();  // what is in flight counts until its completion
    if (barrier_bytes_ == 0 && !send_inflight_)
        core_.post([self = shared_from_this(), b] {
            if (self->barrier_ == b && !self->lost_scheduled_) b->writes_before_sent();
        });
}

void StreamTransport::release_write_barrier(std::error_code ec) {
    barrier_ = nullptr;
    barrier_bytes_ = 0;
    if (detached_) return;
    if (ec) {
        force_close(ec);
    } else if (!lost_scheduled_) {
        // What was written meanwhile goes now, then a close() or write_eof() made meanwhile.
        if (flow_.size() != 0)
            core_.want_flush(this);
        else if (closing_)
            schedule_connection_lost({});
        else if (eof_requested_ && !shut_wr_) {
            shut_wr_ = true;
            shut_write();
        }
    }
    maybe_release();
}

void StreamTransport::after_lost() {
    if (lost_hook_) std::exchange(lost_hook_, {})();
}

void StreamTransport::abort_after_failure() {
    force_close(std::make_error_code(std::errc::connection_aborted));
}

void StreamTransport::released() {
    // The fd closes only once connection_lost has returned and no op (or pending flush/re-arm)
    // can still refer to this transport.
    if (!fd_closed_) {
        fd_closed_ = true;
        ::close(fd_);
    }
}

void StreamTransport::loop_closed() {
    // The loop closed with this transport open: every operation has completed or been
    // cancelled, and no callback runs any more (asyncio does not call connection_lost either).
    recv_armed_ = false;
    send_inflight_ = false;
    barrier_ = nullptr;
    nheld_ = 0;  // the ring goes with the loop
    flush_scheduled = false;
    rearm_scheduled = false;
    closing_ = lost_scheduled_ = lost_done_ = detached_ = true;
    flow_.set(0);
    lost_hook_.reset();
    if (!fd_closed_) {
        fd_closed_ = true;
        ::close(fd_);
    }
}

// ---- the rest --------------------------------------------------------------------------------

std::any StreamTransport::get_extra_info(std::string_view name, std::any default_value) const {
    // Diagnostic (not asyncio): send operations submitted so far, to check coalescing.
    if (name == "send_calls") return std::any(sends_);
    // Diagnostic: write() calls sent straight from a received ring buffer (no copy), and
    // whether such a send is still holding its buffer.
    if (name == "held_writes") return std::any(held_writes_);
    if (name == "holding_send_buffer") return std::any(nheld_ != 0);
    if (name == "held_send_count") return std::any(static_cast<std::size_t>(nheld_));
    return default_value;
}

void StreamTransport::set_protocol(std::unique_ptr<BaseProtocol> protocol) {
    if (!protocol) throw std::invalid_argument("set_protocol(nullptr)");
    auto kind = protocol->kind();
    if (kind != BaseProtocol::Kind::stream && kind != BaseProtocol::Kind::buffered)
        throw std::invalid_argument("a stream transport needs a Protocol or a BufferedProtocol");
    if (detached_) {  // the loop is gone: nothing runs that could still use the old one
        protocol_ = std::move(protocol);
        buffered_ = kind == BaseProtocol::Kind::buffered;
        return;
    }
    take_held_buffered();
    const bool kind_changed = (kind == BaseProtocol::Kind::buffered) != buffered_;
    // The old protocol may be the caller (set_protocol from inside a callback): it is freed once
    // that callback has returned. The one whose buffer an armed receive points into lives until
    // that receive has completed.
    std::unique_ptr<BaseProtocol> old = std::move(protocol_);
    protocol_ = std::move(protocol);
    buffered_ = kind == BaseProtocol::Kind::buffered;
    if (recv_armed_ && target_owner_ == old.get()) std::swap(old, retired_);
    retire(std::move(old));
    // A receive into the old kind's memory ends, so that the new protocol's next one is used.
    if (recv_armed_ && (kind_changed || kind == BaseProtocol::Kind::buffered)) cancel_recv();
}

std::unique_ptr<BaseProtocol> StreamTransport::exchange_protocol(
    std::unique_ptr<BaseProtocol> protocol) {
    take_held_buffered();
    auto old = std::move(protocol_);
    protocol_ = std::move(protocol);
    const bool was_buffered =
        std::exchange(buffered_, protocol_ && protocol_->kind() == BaseProtocol::Kind::buffered);
    // What the armed receive completes goes to the new protocol (start_tls: bytes that arrived
    // before the upgrade are fed to TLS, not lost).
    if (recv_armed_ && was_buffered) cancel_recv();
    return old;
}

}  // namespace aioring::detail
