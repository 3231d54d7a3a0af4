// SPDX-License-Identifier: Apache-2.0
// The oldest kernel aioring runs on, checked when a ring is set up.
#pragma once

#include <string>

namespace aioring::uring {

struct KernelVersion {
    int major = 0;
    int minor = 0;
};

// The oldest release aioring supports (README, "Requirements").
inline constexpr KernelVersion minimum_kernel{5, 19};

// The running kernel's release, or AIORING_PRETEND_KERNEL=MAJOR.MINOR if set (for tests).
// Throws std::invalid_argument for a malformed AIORING_PRETEND_KERNEL.
KernelVersion running_kernel();

// Throws std::runtime_error naming the first feature the running kernel lacks and the release
// that added it.
void check_kernel();

}  // namespace aioring::uring
