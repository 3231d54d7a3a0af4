// SPDX-License-Identifier: Apache-2.0
// LD_PRELOAD shim for tools/dev bench --instructions: counts the bytes a server copies with
// memcpy/memmove (and their _chk and mempcpy forms) into a 64-bit counter in a file named by
// AIORING_COPY_COUNTER, mapped shared so that the bench reads it while the server runs.
// Copies the compiler inlines (small fixed sizes) and glibc's internal ones are not seen; the
// bulk copies of a receive or write path go through the PLT and are.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

using copy_fn = void* (*)(void*, const void*, std::size_t);

copy_fn real_memcpy = nullptr;
copy_fn real_memmove = nullptr;
std::atomic<std::uint64_t>* counter = nullptr;

// Until dlsym has answered (it may copy memory itself), a plain loop does the copy.
void* slow_move(void* dst, const void* src, std::size_t n) {
    auto* d = static_cast<volatile unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    if (d < s) {
        for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
    } else {
        for (std::size_t i = n; i-- > 0;) d[i] = s[i];
    }
    return dst;
}

void count(std::size_t n) {
    if (counter != nullptr) counter->fetch_add(n, std::memory_order_relaxed);
}

__attribute__((constructor(101))) void init() {
    real_memcpy = reinterpret_cast<copy_fn>(dlsym(RTLD_NEXT, "memcpy"));
    real_memmove = reinterpret_cast<copy_fn>(dlsym(RTLD_NEXT, "memmove"));
    const char* path = std::getenv("AIORING_COPY_COUNTER");
    if (path == nullptr) return;
    int fd = ::open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    void* p = ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) counter = static_cast<std::atomic<std::uint64_t>*>(p);
}

}  // namespace

extern "C" {

void* memcpy(void* dst, const void* src, std::size_t n) {
    count(n);
    return real_memcpy ? real_memcpy(dst, src, n) : slow_move(dst, src, n);
}

void* memmove(void* dst, const void* src, std::size_t n) {
    count(n);
    return real_memmove ? real_memmove(dst, src, n) : slow_move(dst, src, n);
}

void* mempcpy(void* dst, const void* src, std::size_t n) {
    return static_cast<char*>(memcpy(dst, src, n)) + n;
}

void* __memcpy_chk(void* dst, const void* src, std::size_t n, std::size_t) {
    return memcpy(dst, src, n);
}

void* __memmove_chk(void* dst, const void* src, std::size_t n, std::size_t) {
    return memmove(dst, src, n);
}

}  // extern "C"
