// SPDX-License-Identifier: Apache-2.0
// asyncio's protocols. Every callback has an empty default; the transport owns its protocol.
//   Protocol:          connection_made -> data_received* -> eof_received? -> connection_lost
//   BufferedProtocol:  connection_made -> (get_buffer -> buffer_updated)* -> eof_received? ->
//                      connection_lost
//   DatagramProtocol:  connection_made -> (datagram_received | error_received)* -> connection_lost
// pause_writing/resume_writing strictly alternate between connection_made and connection_lost.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <system_error>

namespace aioring {

class BaseTransport;
class Transport;
class DatagramTransport;
class SubprocessTransport;
struct SocketAddress;

class BaseProtocol {
public:
    virtual ~BaseProtocol() = default;
    // Exactly once; an empty error_code means a clean close (close(), EOF).
    virtual void connection_lost(std::error_code /*ec*/) {}
    // Write buffer went strictly over the high-water mark.
    virtual void pause_writing() {}
    // Write buffer drained to the low-water mark or below (after a pause_writing).
    virtual void resume_writing() {}
    // What kind of protocol this is; used by transports to pick the receive path.
    enum class Kind { stream, buffered, datagram, subprocess };
    virtual Kind kind() const = 0;
};

namespace detail {
// What both stream protocol kinds share.
class StreamProtocolBase : public BaseProtocol {
public:
    // Exactly once, first. The transport stays valid for as long as the protocol lives (the
    // transport owns the protocol).
    virtual void connection_made(Transport& /*transport*/) {}
    // The peer half-closed. Return true to keep the transport open for writing; false (the
    // default) closes it. At most once, and no data follows it.
    virtual bool eof_received() { return false; }
};
}  // namespace detail

// A stream protocol receiving data as read-only views.
class Protocol : public detail::StreamProtocolBase {
public:
    // `data` is valid only for the call.
    virtual void data_received(std::string_view /*data*/) {}
    Kind kind() const final { return Kind::stream; }
};

// A stream protocol that owns its receive memory: the kernel receives straight into the span
// get_buffer returns, which must stay valid until buffer_updated (or connection_lost).
class BufferedProtocol : public detail::StreamProtocolBase {
public:
    // `sizehint` is the transport's preferred size (it may be ignored). An empty span aborts
    // the transport.
    virtual std::span<std::byte> get_buffer(std::size_t sizehint) = 0;
    virtual void buffer_updated(std::size_t /*nbytes*/) {}
    Kind kind() const final { return Kind::buffered; }
};

}  // namespace aioring
