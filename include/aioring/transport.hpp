// SPDX-License-Identifier: Apache-2.0
// asyncio's transports. A transport owns its protocol; the loop keeps it alive until
// connection_lost has returned and its io_uring operations have completed, and a handle the
// user keeps (std::shared_ptr) stays safe to call after the close: calls are then ignored.
#pragma once

#include <aioring/address.hpp>
#include <aioring/protocol.hpp>

#include <any>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace aioring {

class EventLoop;

class BaseTransport {
public:
    virtual ~BaseTransport() = default;
    // Flushes buffered data, then calls connection_lost with no error. Idempotent.
    virtual void close() = 0;
    // True once close() or abort() was called, or the connection was lost.
    virtual bool is_closing() const = 0;
    // `peername`, `sockname` (SocketAddress), `socket` (int fd); anything else: `default_value`.
    virtual std::any get_extra_info(std::string_view name, std::any default_value = {}) const = 0;
    // Replaces the protocol; the old one is destroyed once the current callback has returned.
    virtual void set_protocol(std::unique_ptr<BaseProtocol> protocol) = 0;
    virtual BaseProtocol* get_protocol() const = 0;
    virtual EventLoop& get_loop() const = 0;

    // get_extra_info with the type spelled out: an empty optional when absent.
    template <class T>
    std::optional<T> extra(std::string_view name) const {
        std::any v = get_extra_info(name);
        if (auto* p = std::any_cast<T>(&v)) return *p;
        return std::nullopt;
    }
};

class ReadTransport : public virtual BaseTransport {
public:
    virtual bool is_reading() const = 0;
    // No data_received until resume_reading, even for data already received. Idempotent.
    virtual void pause_reading() = 0;
    virtual void resume_reading() = 0;
};

class WriteTransport : public virtual BaseTransport {
public:
    // Copies `data` into the write buffer; it is sent without blocking.
    virtual void write(std::string_view data) = 0;
    // Takes `data` without copying.
    virtual void write(std::string&& data) = 0;
    void write(const char* data) { write(std::string_view(data)); }
    virtual void writelines(std::span<const std::string_view> chunks) = 0;
    void writelines(std::initializer_list<std::string_view> chunks) {
        writelines(std::span<const std::string_view>(chunks.begin(), chunks.size()));
    }
    // Half-closes (SHUT_WR) once the buffer has been sent. write() afterwards throws.
    virtual void write_eof() = 0;
    virtual bool can_write_eof() const = 0;
    // Closes at once, dropping the buffer; connection_lost follows.
    virtual void abort() = 0;
    virtual std::size_t get_write_buffer_size() const = 0;
    // (low, high), as asyncio returns them.
    virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
    // asyncio's rules: high alone sets low = high / 4; low alone sets high = 4 * low; neither
    // gives 64 KiB / 16 KiB; low > high throws std::invalid_argument.
    virtual void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                                         std::optional<std::size_t> low = std::nullopt) = 0;
};

// A bidirectional stream transport (TCP, Unix stream, TLS).
class Transport : public ReadTransport, public WriteTransport {};

constexpr std::size_t default_high_water = 64 * 1024;
constexpr std::size_t default_low_water = 16 * 1024;

}  // namespace aioring
