// SPDX-License-Identifier: Apache-2.0
// The minimum kernel: a clear error at ring set-up that names the missing feature and the
// release that has it, instead of a failure deep inside an operation later on.
#include "uring/kernel_check.hpp"

#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace aioring::uring {

namespace {

struct Requirement {
    KernelVersion since;
    const char* feature;
};

// What aioring cannot do without, oldest first. Newer features (multishot accept and receive,
// DEFER_TASKRUN, provided-buffer rings) are probed and fall back, so they are not listed.
constexpr Requirement requirements[] = {
    {{5, 5}, "IORING_SETUP_CQSIZE (a completion queue sized apart from the submission queue)"},
    {{5, 6}, "IORING_OP_SEND and IORING_OP_RECV"},
    {{5, 19}, "IORING_ASYNC_CANCEL_ANY (cancelling every operation in flight when a loop closes)"},
};

bool older(KernelVersion a, KernelVersion b) {
    return a.major < b.major || (a.major == b.major && a.minor < b.minor);
}

std::string to_string(KernelVersion v) {
    return std::to_string(v.major) + "." + std::to_string(v.minor);
}

}  // namespace

KernelVersion running_kernel() {
    KernelVersion v;
    if (const char* pretend = std::getenv("AIORING_PRETEND_KERNEL"); pretend && *pretend) {
        int used = 0;
        if (std::sscanf(pretend, "%d.%d%n", &v.major, &v.minor, &used) != 2 ||
            pretend[used] != '\0' || v.major < 0 || v.minor < 0)
            throw std::invalid_argument(
                std::string("AIORING_PRETEND_KERNEL must be MAJOR.MINOR, not '") + pretend + "'");
        return v;
    }
    utsname u{};
    if (uname(&u) == 0) std::sscanf(u.release, "%d.%d", &v.major, &v.minor);
    return v;
}

void check_kernel() {
    const KernelVersion v = running_kernel();
    for (const Requirement& r : requirements) {
        if (older(v, r.since))
            throw std::runtime_error("aioring needs Linux " + to_string(minimum_kernel) +
                                     " or later: this kernel is " + to_string(v) + ", without " +
                                     r.feature + ", which came in Linux " + to_string(r.since));
    }
}

}  // namespace aioring::uring
