// SPDX-License-Identifier: Apache-2.0
// X509 certificate helpers for the TLS transport: get_extra_info("peercert").
#pragma once

#include <aioring/ssl.hpp>

#include <openssl/x509.h>

namespace aioring::detail {

// The peer certificate's subject, issuer, validity, serial number, DNS and IP subject
// alternative names and DER encoding.
PeerCertificate describe(X509* cert);

}  // namespace aioring::detail
