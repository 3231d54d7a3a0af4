// SPDX-License-Identifier: Apache-2.0
// The base under every transport: stream socket, pipe, datagram endpoint, TLS, subprocess.
//
// DESIGN. What every asyncio transport does the same way lives here once; the kinds keep only
// their own I/O (which operations, which syscalls) and their own byte counts (src/write_flow.hpp
// decides pause_writing/resume_writing for all of them).
//
// Protocol callbacks. Every call into the protocol goes through run_callback(message, f): when
// the callback throws, the loop's exception handler hears of it with asyncio's context
// (message, exception, this transport, its protocol) and the transport aborts (each kind says
// how in abort_after_failure(): a socket drops its buffer and closes with ECONNABORTED, a
// subprocess closes). connection_lost's own exception is only reported: nothing is left to
// abort. A protocol replaced by set_protocol (possibly from inside one of its own callbacks)
// is retired: freed at the end of the loop iteration, not under the caller's stack.
//
// Lifecycle, asyncio's order:
//   start -> connection_made (posted, so never inside the call that made the transport)
//   close()  : no more reading; what is buffered is still sent, then connection_lost(none)
//   abort()  : force close at once: the buffer is dropped (no byte of it leaves after abort()
//              returns), in-flight operations are cancelled, connection_lost(none)
//   an error : force close with the error, connection_lost(error)
// schedule_connection_lost() posts connection_lost exactly once (made_ guards a transport
// whose connection_made has not run: a protocol never hears connection_lost without it);
// lost_done_ is set once it has returned. Every kind sets closing_ as soon as close or abort
// starts: flow control and write() are quiet from then on.
//
// Ownership. The loop owns every transport through its resource registry (LoopResource:
// adopt() when it starts). User handles are std::shared_ptr to the same object. Once
// connection_lost has returned and no operation can still complete into the transport
// (busy() false: no armed receive, no send in flight, no pending flush or re-arm),
// maybe_release() lets the kind close its fds (released()) and gives the loop's reference up;
// the loop drops it at the end of the iteration (LoopCore::release_later, the one deferred
// destroy path), so the object is freed when the last user handle goes, never while one of its
// own methods runs. When the loop closes first, loop_closed() ends everything without
// callbacks, and a kept handle stays safe: detached_ is set and every call is ignored.
#pragma once

#include <aioring/protocol.hpp>
#include <aioring/transport.hpp>

#include <exception>
#include <memory>
#include <system_error>

#include "src/loop_core.hpp"
#include "src/write_flow.hpp"

namespace aioring::detail {

class TransportBase : public LoopResource, protected WriteFlow::Owner {
public:
    TransportBase(const TransportBase&) = delete;
    TransportBase& operator=(const TransportBase&) = delete;

protected:
    // `self` is the transport as users see it (for the exception handler's context).
    TransportBase(LoopCore& core, const BaseTransport& self, std::unique_ptr<BaseProtocol> protocol)
        : LoopResource(core), core_(core), self_(self), protocol_(std::move(protocol)) {}
    ~TransportBase() = default;

    // Runs the protocol callback `f`; false when it threw (reported, and the transport aborts).
    template <class F>
    bool run_callback(const char* message, F&& f) {
        try {
            f();
            return true;
        } catch (...) {
            callback_failed(std::current_exception(), message);
            return false;
        }
    }
    // A protocol callback threw `e`: report it, then abort_after_failure().
    void callback_failed(std::exception_ptr e, const char* message);
    // Only reports (to the loop's exception handler, with this transport and its protocol).
    void report_failure(std::exception_ptr e, const char* message);
    // How this kind ends after a protocol callback failed.
    virtual void abort_after_failure() = 0;

    // Posts connection_lost(ec), once (see DESIGN).
    void schedule_connection_lost(std::error_code ec);
    // connection_lost(ec) if connection_made ran, reported if it throws; then lost_done_,
    // after_lost(), maybe_release().
    void call_connection_lost(std::error_code ec);
    virtual void after_lost() {}

    // Releases the transport once connection_lost has returned and nothing refers to it.
    void maybe_release() {
        if (lost_done_ && !busy()) [[unlikely]]
            release_now();
    }
    // An operation (or a pending flush/re-arm) still refers to this transport.
    virtual bool busy() const = 0;
    // Right before the loop lets go: close the fds.
    virtual void released() {}

    // `old` (the protocol set_protocol replaced) is freed at the end of this loop iteration.
    void retire(std::unique_ptr<BaseProtocol> old);

    // WriteFlow::Owner
    BaseProtocol* flow_protocol() const override { return protocol_.get(); }
    bool flow_closing() const override { return closing_; }
    void flow_failed(const char* message) override {
        callback_failed(std::current_exception(), message);
    }

    LoopCore& core_;
    const BaseTransport& self_;
    std::unique_ptr<BaseProtocol> protocol_;
    bool made_ = false;            // connection_made has been called
    bool closing_ = false;         // close() or abort() started
    bool lost_scheduled_ = false;  // connection_lost is posted
    bool lost_done_ = false;       // connection_lost has returned (or the loop closed)
    bool detached_ = false;        // the loop closed first: calls are ignored

private:
    void release_now();
};

}  // namespace aioring::detail
