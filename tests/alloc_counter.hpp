// SPDX-License-Identifier: Apache-2.0
// Counts operator new on the threads that ask for it, to check that a hot path allocates
// nothing. It replaces the global operator new, so a test executable includes it from one
// source file only (each tests/test_*.cpp is an executable of its own).
#pragma once

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
}  // namespace testing

void* operator new(std::size_t n) {
    if (testing::count_allocations || testing::count_all_threads.load(std::memory_order_relaxed))
        testing::allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
