// SPDX-License-Identifier: Apache-2.0
// loop.sendfile's entry for the stream layer (StreamWriter::sendfile).
#pragma once

#include <aioring/future.hpp>
#include <aioring/transport.hpp>

#include <cstdint>
#include <optional>

namespace aioring::detail {

// EventLoop::sendfile on a transport known by reference (it must be one of the loop's own).
Future<std::size_t> start_sendfile(Transport& transport, int fd, std::int64_t offset,
                                   std::optional<std::int64_t> count, bool fallback);

}  // namespace aioring::detail
