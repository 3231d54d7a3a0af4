// SPDX-License-Identifier: Apache-2.0
// The process-wide half of add_signal_handler (src/signals.hpp): which loop thread owns each
// signal, and the handler that forwards a signal another thread received to that thread.
#include "src/signals.hpp"

namespace aioring::detail {

static_assert(sizeof(pthread_t) == sizeof(unsigned long));
std::atomic<unsigned long> signal_owner[NSIG];  // the loop thread per signal; 0: none

void forward_signal(int sig) {
    const int saved = errno;
    const auto owner = static_cast<pthread_t>(signal_owner[sig].load(std::memory_order_relaxed));
    if (owner != 0 && !pthread_equal(owner, pthread_self())) pthread_kill(owner, sig);
    errno = saved;
}

}  // namespace aioring::detail
