// SPDX-License-Identifier: Apache-2.0
// Counts operator new on the threads that ask for it, to check that a hot path allocates
// nothing. It replaces the global operator new, so a test executable includes it from one
// source file only (each tests/test_*.cpp is an executable of its own).
#pragma once

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace testing {
inline std::atomic<long> allocations{0};
inline thread_local bool count_allocations = false;
// Counts on every thread while true (for code that runs threads of its own).
inline std::atomic<bool> count_all_threads{false};

// Counts while it lives, on this thread.
struct CountAllocations {
    CountAllocations() { count_allocations = true; }
    ~CountAllocations() { count_allocations = false; }
};

// AIORING_ALLOC_BACKTRACE=1: each counted allocation also prints its call stack to stderr, to
// find which one a failing count saw (the addresses resolve with addr2line -e the test).
inline const bool alloc_backtrace = [] {
    const char* e = std::getenv("AIORING_ALLOC_BACKTRACE");
    return e != nullptr && *e != '\0' && *e != '0';
}();
inline void print_allocation(std::size_t n) {
    static thread_local bool inside = false;  // backtrace() may allocate the first time
    if (inside) return;
    inside = true;
    char line[64];
    const int len = __builtin_snprintf(line, sizeof line, "counted allocation of %zu bytes:\n", n);
    if (len > 0) (void)!::write(2, line, static_cast<std::size_t>(len));
    void* frames[32];
    backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    inside = false;
}
}  // namespace testing

void* operator new(std::size_t n) {
    if (testing::count_allocations || testing::count_all_threads.load(std::memory_order_relaxed)) {
        testing::allocations.fetch_add(1, std::memory_order_relaxed);
        if (testing::alloc_backtrace) [[unlikely]]
            testing::print_allocation(n);
    }
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
// g++ 12 sees free() on what its own operator new returned once both are inlined, and warns;
// these two are the replacement pair, so the warning is wrong here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
