// SPDX-License-Identifier: Apache-2.0
// The loop's wake-up for call_soon_threadsafe from another thread: an eventfd whose read is
// kept armed on the ring, so a write to it ends the loop's wait in the kernel.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#include "src/loop_core.hpp"

namespace aioring::detail {

// call_soon_threadsafe's wake-up: an eventfd read kept armed on the ring.
class Wakeup final : public uring::Op {
public:
    explicit Wakeup(LoopCore& core) : core_(core), fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
        if (fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd");
        arm();
    }
    ~Wakeup() { ::close(fd_); }
    void notify() {
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(fd_, &one, sizeof one);
    }
    void complete(int, unsigned) override { arm(); }

private:
    void arm() {
        io_uring_sqe* s = core_.ring.sqe();
        io_uring_prep_read(s, fd_, &value_, sizeof value_, 0);
        io_uring_sqe_set_data(s, static_cast<uring::Op*>(this));
    }
    LoopCore& core_;
    int fd_;
    std::uint64_t value_ = 0;
};

}  // namespace aioring::detail
