// SPDX-License-Identifier: Apache-2.0
// Internal: owning handles for raw transport references (see transport_handle.hpp).
#include "src/transport_handle.hpp"

#include <stdexcept>

#include "src/socket_transport.hpp"
#include "src/ssl_transport.hpp"

namespace aioring::detail {

std::shared_ptr<Transport> shared_transport(Transport& t) {
    // Every transport the loop makes is owned by a shared_ptr from its start, so
    // shared_from_this() is valid for as long as the reference is.
    if (auto* s = dynamic_cast<StreamTransport*>(&t)) return s->shared_from_this();
    if (auto* s = dynamic_cast<SslTransport*>(&t)) return s->shared_from_this();
    throw std::invalid_argument("not a stream transport made by the event loop");
}

std::shared_ptr<Transport> upgraded_transport(Transport& lower) {
    // start_tls installs an SslLowerProtocol on the plain transport, holding the TLS one.
    if (auto* p = dynamic_cast<SslLowerProtocol*>(lower.get_protocol())) return p->tls();
    return nullptr;
}

}  // namespace aioring::detail
