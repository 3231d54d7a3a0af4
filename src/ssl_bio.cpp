// SPDX-License-Identifier: Apache-2.0
// The BIO between OpenSSL and the TLS transport's lower transport (src/ssl_bio.hpp).
#include "src/ssl_bio.hpp"

#include <cstddef>

#include "src/ssl_transport.hpp"

namespace aioring::detail {

namespace {

int bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
    static_cast<SslTransport*>(BIO_get_data(b))->put_output(data, len);
    *written = len;
    return 1;
}

int bio_read(BIO* b, char* out, std::size_t len, std::size_t* readbytes) {
    BIO_clear_retry_flags(b);
    std::size_t n = static_cast<SslTransport*>(BIO_get_data(b))->take_input(out, len);
    *readbytes = n;
    if (n == 0) {
        BIO_set_retry_read(b);  // nothing yet: more comes with the next data_received
        return 0;
    }
    return 1;
}

long bio_ctrl(BIO*, int cmd, long, void*) {
    switch (cmd) {
        case BIO_CTRL_FLUSH:
            return 1;
        case BIO_CTRL_DUP:
            return 1;
        default:
            return 0;
    }
}

int bio_create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
}

}  // namespace

BIO_METHOD* bio_method() {
    static BIO_METHOD* const m = [] {
        BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "aioring");
        BIO_meth_set_write_ex(meth, bio_write);
        BIO_meth_set_read_ex(meth, bio_read);
        BIO_meth_set_ctrl(meth, bio_ctrl);
        BIO_meth_set_create(meth, bio_create);
        return meth;
    }();
    return m;
}

}  // namespace aioring::detail
