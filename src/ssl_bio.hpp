// SPDX-License-Identifier: Apache-2.0
// The BIO between OpenSSL and the TLS transport's lower transport: OpenSSL's writes go straight
// to SslTransport::put_output and its reads come from SslTransport::take_input, so there is no
// memory BIO to copy through. Each BIO's data pointer is its SslTransport.
#pragma once

#include <openssl/bio.h>

namespace aioring::detail {

// The method table, created once per process.
BIO_METHOD* bio_method();

}  // namespace aioring::detail
