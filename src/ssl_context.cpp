// SPDX-License-Identifier: Apache-2.0
// SslContext: an SSL_CTX with asyncio's defaults, and the ssl error category.
#include <aioring/ssl.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>

#include "src/ssl_transport.hpp"

namespace aioring {

namespace {

class SslCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "ssl"; }
    std::string message(int c) const override {
        switch (static_cast<SslErrc>(c)) {
            case SslErrc::handshake_failed:
                return "SSL handshake failed";
            case SslErrc::certificate_verify_failed:
                return "certificate verify failed";
            case SslErrc::handshake_timeout:
                return "SSL handshake timed out";
            case SslErrc::shutdown_timeout:
                return "SSL shutdown timed out";
            case SslErrc::eof_without_close_notify:
                return "EOF occurred in violation of protocol (no close_notify)";
            case SslErrc::protocol_error:
                return "SSL protocol error";
        }
        return "unknown SSL error";
    }
};

int to_openssl(TlsVersion v, bool max) {
    switch (v) {
        case TlsVersion::tls1_2:
            return TLS1_2_VERSION;
        case TlsVersion::tls1_3:
            return TLS1_3_VERSION;
        case TlsVersion::minimum_supported:
            return max ? 0 : TLS1_2_VERSION;
        case TlsVersion::maximum_supported:
            return 0;
    }
    return 0;
}

// The server's ALPN choice: its own first preference that the client offers.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned inlen, void* arg) {
    const std::string& wire = *static_cast<const std::string*>(arg);
    unsigned char* o = nullptr;
    if (SSL_select_next_proto(&o, outlen, reinterpret_cast<const unsigned char*>(wire.data()),
                              static_cast<unsigned>(wire.size()), in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

}  // namespace

const std::error_category& ssl_category() {
    static const SslCategory c;
    return c;
}

namespace detail {
std::string openssl_error_string() {
    std::string out;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        const char* r = ERR_reason_error_string(e);
        char buf[256];
        if (!r) {
            ERR_error_string_n(e, buf, sizeof buf);
            r = buf;
        }
        if (!out.empty()) out += "; ";
        out += r;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}
}  // namespace detail

namespace {
[[noreturn]] void fail(const std::string& what) {
    throw SslError(SslErrc::protocol_error, what + ": " + detail::openssl_error_string());
}
}  // namespace

SslContext::SslContext(bool server) : server_(server) {
    ctx_ = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx_) fail("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    // Renegotiation would make SSL_write wait for reads; nothing here needs it.
    SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
}

SslContext::~SslContext() { SSL_CTX_free(ctx_); }

std::shared_ptr<SslContext> SslContext::client() {
    std::shared_ptr<SslContext> c(new SslContext(false));
    c->set_verify_mode(VerifyMode::required);
    c->check_hostname_ = true;
    c->set_default_verify_paths();
    return c;
}

std::shared_ptr<SslContext> SslContext::server() {
    return std::shared_ptr<SslContext>(new SslContext(true));
}

std::shared_ptr<SslContext> SslContext::client_insecure() {
    return std::shared_ptr<SslContext>(new SslContext(false));
}

void SslContext::load_cert_chain(const std::string& certfile, const std::string& keyfile) {
    const std::string& key = keyfile.empty() ? certfile : keyfile;
    for (const std::string* f : {&certfile, &key}) {
        std::FILE* fp = std::fopen(f->c_str(), "rb");
        if (!fp)
            throw SslError(SslErrc::protocol_error,
                           *f + ": " + std::error_code(errno, std::system_category()).message());
        std::fclose(fp);
    }
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx_, certfile.c_str()) != 1)
        fail(certfile + ": cannot load the certificate chain");
    if (SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1)
        fail(key + ": cannot load the private key");
    if (SSL_CTX_check_private_key(ctx_) != 1)
        fail(key + ": the key does not match the certificate");
}

void SslContext::load_verify_locations(const std::string& cafile, const std::string& capath) {
    if (cafile.empty() && capath.empty())
        throw std::invalid_argument(
            "load_verify_locations: cafile and capath cannot both be empty");
    if (!cafile.empty()) {
        std::FILE* fp = std::fopen(cafile.c_str(), "rb");
        if (!fp)
            throw SslError(
                SslErrc::protocol_error,
                cafile + ": " + std::error_code(errno, std::system_category()).message());
        std::fclose(fp);
    }
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx_, cafile.empty() ? nullptr : cafile.c_str(),
                                      capath.empty() ? nullptr : capath.c_str()) != 1)
        fail((cafile.empty() ? capath : cafile) + ": cannot load CA certificates");
}

void SslContext::set_default_verify_paths() {
    ERR_clear_error();
    if (SSL_CTX_set_default_verify_paths(ctx_) != 1) fail("set_default_verify_paths");
}

void SslContext::set_verify_mode(VerifyMode mode) {
    if (mode == VerifyMode::none && check_hostname_)
        throw std::invalid_argument(
            "Cannot set verify_mode to none when check_hostname is enabled.");
    int flags = SSL_VERIFY_NONE;
    if (mode == VerifyMode::optional) flags = SSL_VERIFY_PEER;
    if (mode == VerifyMode::required)
        flags = SSL_VERIFY_PEER | (server_ ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(ctx_, flags, nullptr);
    verify_mode_ = mode;
}

void SslContext::set_check_hostname(bool on) {
    if (on && verify_mode_ == VerifyMode::none) set_verify_mode(VerifyMode::required);
    check_hostname_ = on;
}

void SslContext::set_alpn_protocols(const std::vector<std::string>& protocols) {
    std::string wire;
    for (const std::string& p : protocols) {
        if (p.empty() || p.size() > 255)
            throw std::invalid_argument("ALPN protocol names must be 1 to 255 bytes: '" + p + "'");
        wire.push_back(static_cast<char>(p.size()));
        wire += p;
    }
    alpn_ = protocols;
    alpn_wire_ = std::move(wire);
    if (server_) {
        if (alpn_wire_.empty())
            SSL_CTX_set_alpn_select_cb(ctx_, nullptr, nullptr);
        else
            SSL_CTX_set_alpn_select_cb(ctx_, select_alpn, &alpn_wire_);
    } else if (SSL_CTX_set_alpn_protos(ctx_,
                                       reinterpret_cast<const unsigned char*>(alpn_wire_.data()),
                                       static_cast<unsigned>(alpn_wire_.size())) != 0) {
        fail("set_alpn_protocols");
    }
}

void SslContext::set_minimum_version(TlsVersion v) {
    if (SSL_CTX_set_min_proto_version(ctx_, to_openssl(v, false)) != 1) fail("set_minimum_version");
}

void SslContext::set_maximum_version(TlsVersion v) {
    if (SSL_CTX_set_max_proto_version(ctx_, to_openssl(v, true)) != 1) fail("set_maximum_version");
}

void SslContext::set_ciphers(const std::string& ciphers) {
    ERR_clear_error();
    if (SSL_CTX_set_cipher_list(ctx_, ciphers.c_str()) != 1) fail("set_ciphers('" + ciphers + "')");
}

void SslContext::set_ciphersuites(const std::string& suites) {
    ERR_clear_error();
    if (SSL_CTX_set_ciphersuites(ctx_, suites.c_str()) != 1)
        fail("set_ciphersuites('" + suites + "')");
}

}  // namespace aioring
