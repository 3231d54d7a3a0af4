// SPDX-License-Identifier: Apache-2.0
// asyncio's datagram transport and protocol (UDP and Unix datagram sockets), and the options of
// EventLoop::create_datagram_endpoint.
#pragma once

#include <aioring/address.hpp>
#include <aioring/protocol.hpp>
#include <aioring/transport.hpp>

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace aioring {

// A datagram endpoint. sendto() queues one datagram and never blocks; queued datagrams go out
// in order, several per loop iteration. Send and receive errors that concern one datagram
// (ICMP port unreachable, message too long) reach DatagramProtocol::error_received and the
// endpoint keeps working. close() sends what is queued, then calls connection_lost with no
// error; abort() drops it. Flow control is the stream transports': pause_writing once the
// write-buffer size goes strictly over the high-water mark, resume_writing at the low-water
// mark or below, strictly alternating, never once closing.
class DatagramTransport : public virtual BaseTransport {
public:
    // To the endpoint's remote address; std::invalid_argument if it has none.
    virtual void sendto(std::string_view data) = 0;
    // To `addr`; with a remote address set, `addr` must be that address (else
    // std::invalid_argument). Ignored once the transport is closing. Empty data sends an empty
    // datagram.
    virtual void sendto(std::string_view data, const SocketAddress& addr) = 0;
    void sendto(const char* data) { sendto(std::string_view(data)); }
    void sendto(const char* data, const SocketAddress& addr) {
        sendto(std::string_view(data), addr);
    }
    // Closes at once, dropping queued datagrams; connection_lost follows.
    virtual void abort() = 0;
    // Queued bytes, counted as asyncio 3.13 counts them: each datagram's size plus
    // datagram_overhead, so that queued empty datagrams weigh too.
    virtual std::size_t get_write_buffer_size() const = 0;
    // (low, high), as asyncio returns them.
    virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
    // The stream transports' rules: high alone sets low = high / 4; low alone sets
    // high = 4 * low; neither gives 64 KiB / 16 KiB; low > high throws std::invalid_argument.
    virtual void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                                         std::optional<std::size_t> low = std::nullopt) = 0;
};

// What each queued datagram adds to get_write_buffer_size() besides its payload.
constexpr std::size_t datagram_overhead = 8;

// connection_made -> (datagram_received | error_received)* -> connection_lost.
class DatagramProtocol : public BaseProtocol {
public:
    // Exactly once, first. The transport stays valid for as long as the protocol lives.
    virtual void connection_made(DatagramTransport& /*transport*/) {}
    // One whole datagram (possibly empty); `data` and `addr` are valid only for the call.
    virtual void datagram_received(std::string_view /*data*/, const SocketAddress& /*addr*/) {}
    // A send or receive failed for one datagram (e.g. connection_refused after an ICMP port
    // unreachable, message_size for a datagram larger than the receive buffer); the transport
    // stays open.
    virtual void error_received(std::error_code /*ec*/) {}
    Kind kind() const final { return Kind::datagram; }
};

// create_datagram_endpoint's keyword arguments. Either address may be omitted; with neither,
// `family` must be given. Host names resolve without blocking the loop.
struct DatagramEndpointOptions {
    // Not an aggregate: `DatagramEndpointOptions{}` in co_await is safe with GCC 12 (README).
    DatagramEndpointOptions() = default;
    std::optional<std::pair<std::string, std::uint16_t>> local_addr;   // bind here
    std::optional<std::pair<std::string, std::uint16_t>> remote_addr;  // connect here
    // Unix datagram sockets (family AF_UNIX): bind to / connect to a path. A stale socket file
    // at local_path is removed first, as asyncio does. A leading '@' names the abstract namespace.
    std::optional<std::string> local_path;
    std::optional<std::string> remote_path;
    int family = AF_UNSPEC;
    int proto = 0;
    int flags = 0;  // getaddrinfo flags
    bool reuse_port = false;
    bool allow_broadcast = false;
    // An existing SOCK_DGRAM socket to wrap (no other option may be set); the transport takes
    // ownership of it.
    int sock = -1;
};

}  // namespace aioring
