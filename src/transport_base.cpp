// SPDX-License-Identifier: Apache-2.0
// The base under every transport: callback failures, connection_lost, release (see the header).
#include "src/transport_base.hpp"

namespace aioring::detail {

void TransportBase::report_failure(std::exception_ptr e, const char* message) {
    report(core_, std::move(e), message, &self_);
}

void TransportBase::callback_failed(std::exception_ptr e, const char* message) {
    report_failure(std::move(e), message);
    abort_after_failure();
}

void TransportBase::schedule_connection_lost(std::error_code ec) {
    if (lost_scheduled_) return;
    lost_scheduled_ = true;
    closing_ = true;
    // The loop's reference keeps this transport until after connection_lost (release() comes
    // later); a loop that closes first drops the callback without running it.
    core_.post([this, ec] { call_connection_lost(ec); });
}

void TransportBase::call_connection_lost(std::error_code ec) {
    if (lost_done_) return;
    if (made_) {  // connection_made always precedes it (it was scheduled first)
        try {
            protocol_->connection_lost(ec);
        } catch (...) {
            report_failure(std::current_exception(), "protocol connection_lost() failed");
        }
    }
    lost_done_ = true;
    after_lost();
    maybe_release();
}

void TransportBase::release_now() {
    released();
    release();  // the loop drops its reference once this iteration is over
}

void TransportBase::retire(std::unique_ptr<BaseProtocol> old) {
    if (old) core_.release_later(std::shared_ptr<BaseProtocol>(std::move(old)));
}

}  // namespace aioring::detail
