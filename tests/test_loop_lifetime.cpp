// SPDX-License-Identifier: Apache-2.0
// A loop's lifetime against the program's: a static EventLoop is destroyed at exit, after this
// thread's thread_local objects are gone (found by fuzz/stream_reader.cpp: the loop's destructor
// unlinked itself from a thread_local registry that had been freed; ASan: heap-use-after-free).
#include "support.hpp"

using namespace testing;

TEST_SUITE("loop lifetime") {
    TEST_CASE(
        "a static EventLoop runs and is destroyed at exit, after the thread's thread_locals") {
        static EventLoop loop;  // its destructor runs after main returns: ASan checks it
        bool ran = false;
        loop.call_soon([&] {
            ran = true;
            loop.stop();
        });
        loop.run_forever();
        CHECK(ran);
    }

    TEST_CASE("loops destroyed out of creation order leave the others usable") {
        auto a = std::make_unique<EventLoop>();
        auto b = std::make_unique<EventLoop>();
        auto c = std::make_unique<EventLoop>();
        b.reset();  // the middle of the thread's list
        for (EventLoop* l : {a.get(), c.get()}) {
            bool ran = false;
            l->call_soon([&] {
                ran = true;
                l->stop();
            });
            l->run_forever();
            CHECK(ran);
        }
        // Running one while another runs on the same thread is still refused.
        bool refused = false;
        a->call_soon([&] {
            try {
                c->run_forever();
            } catch (const LoopError&) {
                refused = true;
            }
            a->stop();
        });
        a->run_forever();
        CHECK(refused);
    }
}
