// SPDX-License-Identifier: Apache-2.0
// TLS configuration (asyncio's ssl.SSLContext, on OpenSSL 3) and the errors TLS transports
// report. <openssl/...> stays out of this header: the raw handles are forward-declared.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

struct ssl_ctx_st;  // SSL_CTX
struct ssl_st;      // SSL

namespace aioring {

// Why a TLS connection failed or ended without a clean close_notify exchange.
enum class SslErrc {
    handshake_failed = 1,       // the peer or OpenSSL refused the handshake
    certificate_verify_failed,  // the peer's certificate (or its host name) did not verify
    handshake_timeout,          // ssl_handshake_timeout passed
    shutdown_timeout,           // the peer did not answer close_notify within ssl_shutdown_timeout
    eof_without_close_notify,   // the peer closed TCP without close_notify (possible truncation)
    protocol_error,             // a TLS error after the handshake (bad record, alert)
};
const std::error_category& ssl_category();
inline std::error_code make_error_code(SslErrc e) { return {static_cast<int>(e), ssl_category()}; }

// A TLS failure with OpenSSL's words: what() reads like Python's ssl errors, e.g.
// "SSL handshake failed: certificate verify failed: Hostname mismatch, certificate is not valid
// for 'example.com'".
class SslError : public std::system_error {
public:
    SslError(SslErrc code, const std::string& what)
        : std::system_error(make_error_code(code), what), what_(what) {}
    const char* what() const noexcept override { return what_.c_str(); }

private:
    std::string what_;  // without system_error's ": " + code().message() suffix
};

enum class VerifyMode {
    none,
    optional,
    required
};  // ssl.CERT_NONE / CERT_OPTIONAL / CERT_REQUIRED
enum class TlsVersion { minimum_supported, tls1_2, tls1_3, maximum_supported };

// The peer's certificate, as get_extra_info("peercert") gives it once it has been verified.
struct PeerCertificate {
    std::string subject;  // RFC 2253, e.g. "CN=localhost,O=aioring"
    std::string issuer;
    std::vector<std::string> subject_alt_names;  // "DNS:localhost", "IP Address:127.0.0.1"
    std::string not_before, not_after;           // "Nov 24 04:00:00 2026 GMT"
    std::string serial_number;                   // hex
    std::string der;                             // the certificate itself, DER bytes
};

// get_extra_info("cipher"): Python's (name, protocol version, secret bits).
struct CipherInfo {
    std::string name;     // "TLS_AES_256_GCM_SHA384"
    std::string version;  // "TLSv1.3"
    int secret_bits = 0;
};

// An SSL_CTX with asyncio's defaults. client() verifies the peer (CERT_REQUIRED, check_hostname,
// the system's CA store) as ssl.create_default_context() does; server() asks for no client
// certificate. Both allow TLS 1.2 and 1.3 only and refuse renegotiation. Configure before the
// first connection uses it; it is then shared (std::shared_ptr) by every connection made with it.
// Every setter throws SslError (or std::invalid_argument) with OpenSSL's reason on failure.
class SslContext {
public:
    static std::shared_ptr<SslContext> client();
    static std::shared_ptr<SslContext> server();
    // A client context that verifies nothing (no certificate check, no host name check).
    static std::shared_ptr<SslContext> client_insecure();
    ~SslContext();
    SslContext(const SslContext&) = delete;
    SslContext& operator=(const SslContext&) = delete;

    bool is_server() const { return server_; }
    // PEM certificate chain and private key (keyfile empty: the key is in certfile). A missing or
    // unreadable file throws SslError naming it.
    void load_cert_chain(const std::string& certfile, const std::string& keyfile = {});
    // CA certificates to verify the peer with (PEM file and/or hashed directory).
    void load_verify_locations(const std::string& cafile, const std::string& capath = {});
    void set_default_verify_paths();
    // As in Python, VerifyMode::none with check_hostname on throws std::invalid_argument: turn
    // check_hostname off first.
    void set_verify_mode(VerifyMode mode);
    VerifyMode verify_mode() const { return verify_mode_; }
    // Turning it on also sets VerifyMode::required when the mode was none (as Python does).
    void set_check_hostname(bool on);
    bool check_hostname() const { return check_hostname_; }
    // Protocols in preference order ("h2", "http/1.1"); a server picks its first that the client
    // offers, and no overlap means no ALPN (not a failure).
    void set_alpn_protocols(const std::vector<std::string>& protocols);
    const std::vector<std::string>& alpn_protocols() const { return alpn_; }
    void set_minimum_version(TlsVersion v);
    void set_maximum_version(TlsVersion v);
    // OpenSSL cipher list for TLS 1.2 and below ("ECDHE+AESGCM").
    void set_ciphers(const std::string& ciphers);
    // TLS 1.3 cipher suites ("TLS_AES_128_GCM_SHA256").
    void set_ciphersuites(const std::string& suites);

    // The raw SSL_CTX for anything not wrapped here.
    ssl_ctx_st* native_handle() const { return ctx_; }

private:
    explicit SslContext(bool server);
    ssl_ctx_st* ctx_ = nullptr;
    bool server_ = false;
    VerifyMode verify_mode_ = VerifyMode::none;
    bool check_hostname_ = false;
    std::vector<std::string> alpn_;
    std::string alpn_wire_;  // length-prefixed, for the server's selection callback
};

}  // namespace aioring

template <>
struct std::is_error_code_enum<aioring::SslErrc> : std::true_type {};
