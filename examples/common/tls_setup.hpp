// SPDX-License-Identifier: Apache-2.0
// TLS set-up shared by the examples and tools: a server context from PEM files (a missing or
// unreadable file throws with its name), client contexts with or without verification, and the
// "--alpn h2,http/1.1" list.
#pragma once

#include <aioring/ssl.hpp>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace tls_setup {

// Throws std::runtime_error "FILE: CAUSE" unless `path` can be opened for reading.
inline void require_readable(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f)
        throw std::runtime_error(path + ": " +
                                 std::error_code(errno, std::system_category()).message());
    std::fclose(f);
}

inline std::vector<std::string> split_alpn(const std::string& list) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= list.size() && !list.empty()) {
        std::size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        if (comma > start) out.push_back(list.substr(start, comma - start));
        start = comma + 1;
    }
    return out;
}

// A server context serving `cert` (PEM chain) with `key` (PEM). Errors name the file:
// "server.pem: No such file or directory".
inline std::shared_ptr<aioring::SslContext> server_context(const std::string& cert,
                                                           const std::string& key,
                                                           const std::string& alpn = {}) {
    require_readable(cert);
    require_readable(key);
    auto ctx = aioring::SslContext::server();
    ctx->load_cert_chain(cert, key);
    if (!alpn.empty()) ctx->set_alpn_protocols(split_alpn(alpn));
    return ctx;
}

// A client context: verifies against `cafile` (or the system store when empty) and the host name,
// unless `insecure`, which verifies nothing (what aioring-load --tls uses without --cafile).
inline std::shared_ptr<aioring::SslContext> client_context(const std::string& cafile, bool insecure,
                                                           const std::string& alpn = {}) {
    std::shared_ptr<aioring::SslContext> ctx;
    if (insecure) {
        ctx = aioring::SslContext::client_insecure();
    } else {
        ctx = aioring::SslContext::client();
        if (!cafile.empty()) {
            require_readable(cafile);
            ctx->load_verify_locations(cafile);
        }
    }
    if (!alpn.empty()) ctx->set_alpn_protocols(split_alpn(alpn));
    return ctx;
}

}  // namespace tls_setup
