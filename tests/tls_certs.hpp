// SPDX-License-Identifier: Apache-2.0
// Test certificates for the TLS suites, made once per test binary by the openssl tool (EC keys:
// fast): a CA, a server certificate it signed for localhost and 127.0.0.1, and an unrelated
// self-signed one; plus the server and client contexts most cases use.
#pragma once

#include <doctest/doctest.h>
#include <aioring/ssl.hpp>

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

namespace testing {

struct TestCerts {
    std::string dir, ca, cert, key, other_cert, other_key;
    TestCerts() {
        char tmpl[] = "/tmp/aioring-tls-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        ca = dir + "/ca.pem";
        cert = dir + "/server.pem";
        key = dir + "/server.key";
        other_cert = dir + "/other.pem";
        other_key = dir + "/other.key";
        const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        const std::string script =
            "cd " + dir +
            " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf && "
            "openssl req -x509 " +
            ec +
            " -keyout ca.key -out ca.pem -days 2 -subj /CN=aioring-test-ca && "
            "openssl req " +
            ec +
            " -keyout server.key -out server.csr -subj /CN=localhost/O=aioring && "
            "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
            "server.pem "
            "-days 2 -extfile ext.cnf && "
            "openssl req -x509 " +
            ec +
            " -keyout other.key -out other.pem -days 2 -subj /CN=localhost "
            "-addext subjectAltName=DNS:localhost";
        REQUIRE(std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0);
    }
    ~TestCerts() { std::filesystem::remove_all(dir); }
};

inline const TestCerts& certs() {
    static TestCerts c;
    return c;
}

// A server context serving the CA-signed certificate.
inline std::shared_ptr<aioring::SslContext> server_ctx() {
    auto c = aioring::SslContext::server();
    c->load_cert_chain(certs().cert, certs().key);
    return c;
}

// A client context that verifies against the test CA (and the host name).
inline std::shared_ptr<aioring::SslContext> client_ctx() {
    auto c = aioring::SslContext::client();
    c->load_verify_locations(certs().ca);
    return c;
}

}  // namespace testing
