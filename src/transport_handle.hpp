// SPDX-License-Identifier: Apache-2.0
// Internal: the owning handles behind the Transport& that protocols receive, for layers above
// the transports (streams) that hold a raw pointer but must hand loop.start_tls a shared_ptr.
#pragma once

#include <aioring/transport.hpp>

#include <memory>

namespace aioring::detail {

// The std::shared_ptr the loop keeps for `t` (a socket, pipe or TLS transport it made);
// std::invalid_argument for a Transport of the user's own.
std::shared_ptr<Transport> shared_transport(Transport& t);

// After loop.start_tls(lower, ...) returned and while the handshake runs: the TLS transport
// that now owns the protocol `lower` had (the one start_tls's future will give), or null.
std::shared_ptr<Transport> upgraded_transport(Transport& lower);

}  // namespace aioring::detail
