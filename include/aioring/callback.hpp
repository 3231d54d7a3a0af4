// SPDX-License-Identifier: Apache-2.0
// A move-only `void()` callable that stores small callables inline (no heap for the loop's
// hot path); larger ones go to the heap.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace aioring {

class Callback {
public:
    static constexpr std::size_t inline_size = 48;

    Callback() noexcept = default;
    Callback(std::nullptr_t) noexcept {}
    template <class F, class D = std::decay_t<F>,
              class = std::enable_if_t<!std::is_same_v<D, Callback> && std::is_invocable_v<D&>>>
    Callback(F&& f) {  // NOLINT: implicit, like std::function
        if constexpr (sizeof(D) <= inline_size && alignof(D) <= alignof(std::max_align_t) &&
                      std::is_nothrow_move_constructible_v<D>) {
            ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
            ops_ = &inline_ops<D>;
        } else {
            *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
            ops_ = &heap_ops<D>;
        }
    }
    Callback(Callback&& o) noexcept : ops_(o.ops_) {
        if (ops_) ops_->move(buf_, o.buf_);
        o.ops_ = nullptr;
    }
    Callback& operator=(Callback&& o) noexcept {
        if (this != &o) {
            reset();
            ops_ = o.ops_;
            if (ops_) ops_->move(buf_, o.buf_);
            o.ops_ = nullptr;
        }
        return *this;
    }
    ~Callback() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }
    void operator()() { ops_->call(buf_); }
    // The stored callable's type (typeid(void) when empty): the loop's debug mode names slow
    // callbacks by it.
    const std::type_info& target_type() const noexcept { return ops_ ? *ops_->type : typeid(void); }
    void reset() noexcept {
        if (ops_) ops_->destroy(buf_);
        ops_ = nullptr;
    }

private:
    struct Ops {
        void (*call)(void*);
        void (*move)(void* dst, void* src) noexcept;  // move-construct into dst, destroy src
        void (*destroy)(void*) noexcept;
        const std::type_info* type;
    };
    template <class D>
    static constexpr Ops inline_ops{[](void* p) { (*static_cast<D*>(p))(); },
                                    [](void* dst, void* src) noexcept {
                                        ::new (dst) D(std::move(*static_cast<D*>(src)));
                                        static_cast<D*>(src)->~D();
                                    },
                                    [](void* p) noexcept { static_cast<D*>(p)->~D(); }, &typeid(D)};
    template <class D>
    static constexpr Ops heap_ops{
        [](void* p) { (**static_cast<D**>(p))(); },
        [](void* dst, void* src) noexcept { *static_cast<D**>(dst) = *static_cast<D**>(src); },
        [](void* p) noexcept { delete *static_cast<D**>(p); }, &typeid(D)};

    alignas(std::max_align_t) unsigned char buf_[inline_size];
    const Ops* ops_ = nullptr;
};

}  // namespace aioring
