// SPDX-License-Identifier: Apache-2.0
// start_tls: upgrades a plain TCP or Unix stream transport to TLS in place. The TLS transport
// itself is src/ssl_transport.cpp.
#include <aioring/loop.hpp>

#include <stdexcept>

#include "src/socket_transport.hpp"
#include "src/ssl_transport.hpp"

namespace aioring {

Future<std::shared_ptr<Transport>> EventLoop::start_tls(std::shared_ptr<Transport> transport,
                                                        std::shared_ptr<SslContext> sslcontext,
                                                        StartTlsOptions options) {
    if (!transport) throw std::invalid_argument("start_tls: no transport");
    if (!sslcontext) throw std::invalid_argument("start_tls: no SslContext");
    auto* stream = dynamic_cast<detail::StreamTransport*>(transport.get());
    if (!stream)
        throw std::invalid_argument("start_tls needs a plain TCP or Unix stream transport");
    auto* lower = dynamic_cast<detail::SocketTransport*>(stream);
    if (!lower)
        throw std::invalid_argument(
            "start_tls: a pipe transport cannot carry TLS (it needs a TCP or Unix stream socket)");
    if (lower->is_closing()) throw std::logic_error("start_tls: the transport is closing");
    if (sslcontext->is_server() != options.server_side)
        throw std::invalid_argument(options.server_side
                                        ? "start_tls(server_side=true) needs a server SslContext"
                                        : "start_tls needs a client SslContext");
    if (!options.server_side && options.server_hostname.empty() && sslcontext->check_hostname())
        throw std::invalid_argument("check_hostname requires server_hostname");
    detail::SslParams params{sslcontext, options.server_side, options.server_hostname,
                             options.ssl_handshake_timeout, options.ssl_shutdown_timeout};
    auto t = std::make_shared<detail::SslTransport>(*core_, nullptr, std::move(params), true);
    Future<std::shared_ptr<Transport>> fut(*this);
    t->set_on_handshake([fut, w = std::weak_ptr<detail::SslTransport>(t)](std::exception_ptr e) {
        if (fut.done()) return;
        if (e)
            fut.set_exception(e);
        else
            fut.set_result(std::shared_ptr<Transport>(w.lock()));
    });
    const bool paused = lower->is_writing_paused();
    // Bytes still in flight or held by the plain transport now go to the TLS side.
    t->set_app(lower->exchange_protocol(std::make_unique<detail::SslLowerProtocol>(t)));
    t->attach(*lower, paused, std::move(options.initial_data));
    lower->resume_reading();
    return fut;
}

}  // namespace aioring
