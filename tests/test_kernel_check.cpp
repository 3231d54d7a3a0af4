// SPDX-License-Identifier: Apache-2.0
// The minimum kernel: EventLoop set-up on a kernel that is too old (AIORING_PRETEND_KERNEL
// pretends) fails at once, naming the missing feature and the release that has it, when io_uring
// is asked for (by default such a loop falls back to epoll: test_epoll_backend).
#include <cstdlib>
#include <stdexcept>

#include "support.hpp"

using namespace testing;

namespace {

// Sets AIORING_PRETEND_KERNEL for the scope of one case.
struct PretendKernel {
    explicit PretendKernel(const char* v) { ::setenv("AIORING_PRETEND_KERNEL", v, 1); }
    ~PretendKernel() { ::unsetenv("AIORING_PRETEND_KERNEL"); }
};

std::string loop_error() {
    try {
        LoopOptions o;
        o.backend = Backend::io_uring;
        EventLoop loop(o);
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_SUITE("kernel check") {
    TEST_CASE("a 5.10 kernel is refused, naming the missing feature and the release that has it") {
        PretendKernel k("5.10");
        const std::string what = loop_error();
        CHECK(what.find("aioring needs Linux 5.19 or later") != std::string::npos);
        CHECK(what.find("this kernel is 5.10") != std::string::npos);
        CHECK(what.find("IORING_ASYNC_CANCEL_ANY") != std::string::npos);
        CHECK(what.find("came in Linux 5.19") != std::string::npos);
    }

    TEST_CASE("the oldest missing feature is the one named") {
        PretendKernel k("5.4");
        const std::string what = loop_error();
        CHECK(what.find("IORING_SETUP_CQSIZE") != std::string::npos);
        CHECK(what.find("came in Linux 5.5") != std::string::npos);
    }

    TEST_CASE("5.19 and later kernels are accepted") {
        for (const char* v : {"5.19", "6.0", "6.18", "10.0"}) {
            INFO("kernel ", v);
            PretendKernel k(v);
            CHECK(loop_error().empty());
        }
    }

    TEST_CASE("a malformed AIORING_PRETEND_KERNEL is an error, not ignored") {
        for (const char* v : {"5", "five.ten", "5.10.1", "5.x"}) {
            INFO("value ", v);
            PretendKernel k(v);
            CHECK(loop_error().find("AIORING_PRETEND_KERNEL must be MAJOR.MINOR") !=
                  std::string::npos);
        }
    }
}
