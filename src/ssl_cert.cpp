// SPDX-License-Identifier: Apache-2.0
// X509 certificate helpers for the TLS transport (src/ssl_cert.hpp).
#include "src/ssl_cert.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include <string>

namespace aioring::detail {

namespace {

std::string x509_name(X509_NAME* n) {
    if (!n) return {};
    BIO* m = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(m, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char* p = nullptr;
    long len = BIO_get_mem_data(m, &p);
    std::string out(p, static_cast<std::size_t>(len));
    BIO_free(m);
    return out;
}

std::string asn1_time(const ASN1_TIME* t) {
    BIO* m = BIO_new(BIO_s_mem());
    ASN1_TIME_print(m, t);
    char* p = nullptr;
    long len = BIO_get_mem_data(m, &p);
    std::string out(p, static_cast<std::size_t>(len));
    BIO_free(m);
    return out;
}

}  // namespace

PeerCertificate describe(X509* cert) {
    PeerCertificate c;
    c.subject = x509_name(X509_get_subject_name(cert));
    c.issuer = x509_name(X509_get_issuer_name(cert));
    c.not_before = asn1_time(X509_get0_notBefore(cert));
    c.not_after = asn1_time(X509_get0_notAfter(cert));
    if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
        char* hex = BN_bn2hex(bn);
        c.serial_number = hex;
        OPENSSL_free(hex);
        BN_free(bn);
    }
    auto* names =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
        const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_DNS) {
            const ASN1_STRING* s = g->d.dNSName;
            c.subject_alt_names.push_back(
                "DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                     static_cast<std::size_t>(ASN1_STRING_length(s))));
        } else if (g->type == GEN_IPADD) {
            const ASN1_STRING* s = g->d.iPAddress;
            char buf[INET6_ADDRSTRLEN] = {};
            int len = ASN1_STRING_length(s);
            if (len == 4 || len == 16)
                inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), buf, sizeof buf);
            c.subject_alt_names.push_back(std::string("IP Address:") + buf);
        }
    }
    if (names) GENERAL_NAMES_free(names);
    int len = i2d_X509(cert, nullptr);
    if (len > 0) {
        c.der.resize(static_cast<std::size_t>(len));
        auto* p = reinterpret_cast<unsigned char*>(c.der.data());
        i2d_X509(cert, &p);
    }
    return c;
}

}  // namespace aioring::detail
