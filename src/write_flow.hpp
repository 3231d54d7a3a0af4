// SPDX-License-Identifier: Apache-2.0
// Where pause_writing and resume_writing are decided, for every transport kind.
//
// DESIGN. asyncio's write flow control is one small state machine, and every way it has gone
// wrong in asyncio and uvloop was a path that changed the buffered byte count without running
// it (cpython#127655: writelines; cpython#135444: datagram sizes never decremented; asyncio#329:
// new limits not re-evaluated; zuvloop#33: a resume after an abort inside pause_writing). So
// each transport (stream socket, pipe, datagram endpoint, TLS) keeps its buffered byte count
// in one WriteFlow, and the count changes only through it: write, writelines and sendto
// (add), a send completion (sub), an error or abort (set), new limits (set_limits), and for
// TLS the plaintext waiting for the handshake as well as the records not yet sent below. The
// rules, in one place (update()):
//   - pause_writing() when the count goes strictly over the high-water mark;
//   - resume_writing() when it is at or below the low-water mark after a pause;
//   - the two strictly alternate (a paused flag, set before the call);
//   - neither is called once the transport is closing (close or abort started), so a protocol
//     that aborts inside pause_writing never hears resume_writing.
// The callbacks run synchronously, from inside write() for a pause: a writer that never
// yields sees it before its next write(). A callback that throws goes to the owner's
// flow_failed (report to the loop's exception handler, then abort).
// The hot path (add/sub without crossing a mark) is two compares, inline.
#pragma once

#include <aioring/transport.hpp>

#include <fmt/core.h>

#include <optional>
#include <stdexcept>
#include <utility>

namespace aioring::detail {

// (high, low) from set_write_buffer_limits' arguments: neither gives 64 KiB / 16 KiB, high alone
// sets low = high / 4, low alone sets high = 4 * low. low > high throws std::invalid_argument.
inline std::pair<std::size_t, std::size_t> resolve_write_limits(std::optional<std::size_t> high,
                                                                std::optional<std::size_t> low) {
    std::size_t h, l;
    if (!high && !low) {
        h = default_high_water;
        l = default_low_water;
    } else if (!high) {
        l = *low;
        h = 4 * l;
    } else {
        h = *high;
        l = low ? *low : h / 4;
    }
    if (l > h)
        throw std::invalid_argument(
            fmt::format("high ({}) must be >= low ({}) must be >= 0", h, l));
    return {h, l};
}

class WriteFlow {
public:
    // The transport a WriteFlow belongs to: whom to tell, and whether it is closing.
    class Owner {
    public:
        virtual BaseProtocol* flow_protocol() const = 0;
        virtual bool flow_closing() const = 0;
        // The protocol's pause_writing/resume_writing threw (std::current_exception()).
        virtual void flow_failed(const char* message) = 0;

    protected:
        ~Owner() = default;
    };

    explicit WriteFlow(Owner& owner) : owner_(owner) {}
    WriteFlow(const WriteFlow&) = delete;
    WriteFlow& operator=(const WriteFlow&) = delete;

    std::size_t size() const { return size_; }
    std::size_t high() const { return high_; }
    std::size_t low() const { return low_; }
    // pause_writing was the protocol's last flow-control call.
    bool paused() const { return paused_; }

    void add(std::size_t n) {
        size_ += n;
        if (size_ > high_ && !paused_) [[unlikely]]
            update();
    }
    void sub(std::size_t n) {
        size_ -= n;
        if (paused_ && size_ <= low_) [[unlikely]]
            update();
    }
    void set(std::size_t n) {
        size_ = n;
        update();
    }
    // set_write_buffer_limits: the new limits apply at once (asyncio#329).
    void set_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) {
        std::tie(high_, low_) = resolve_write_limits(high, low);
        update();
    }
    // A transport that takes over a paused writer (start_tls): the protocol was told
    // pause_writing by the transport below, so the next call it hears is resume_writing.
    void take_over(std::size_t size, bool paused, std::size_t high, std::size_t low) {
        size_ = size;
        paused_ = paused;
        high_ = high;
        low_ = low;
        update();
    }

    void update() {
        if (owner_.flow_closing()) return;
        if (!paused_ && size_ > high_) {
            paused_ = true;
            call(true);
        } else if (paused_ && size_ <= low_) {
            paused_ = false;
            call(false);
        }
    }

private:
    void call(bool pause) {
        try {
            BaseProtocol* p = owner_.flow_protocol();
            if (!p) return;
            if (pause)
                p->pause_writing();
            else
                p->resume_writing();
        } catch (...) {
            owner_.flow_failed(pause ? "protocol pause_writing() failed"
                                     : "protocol resume_writing() failed");
        }
    }

    Owner& owner_;
    std::size_t size_ = 0;
    std::size_t high_ = default_high_water;
    std::size_t low_ = default_low_water;
    bool paused_ = false;
};

}  // namespace aioring::detail
