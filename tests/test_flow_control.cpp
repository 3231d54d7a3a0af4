// SPDX-License-Identifier: Apache-2.0
// asyncio's write flow control, exactly as documented: pause_writing strictly over the high-water
// mark, resume_writing at the low-water mark or below, always paired, never once closing.
#include "support.hpp"

#include <thread>

using namespace testing;

namespace {

// Records the buffer size each flow-control callback saw.
class FlowProtocol : public RecordingProtocol {
public:
    FlowProtocol(Events& e, std::vector<std::size_t>& pause_sizes,
                 std::vector<std::size_t>& resume_sizes)
        : RecordingProtocol(e), e_(e), pause_sizes_(pause_sizes), resume_sizes_(resume_sizes) {}
    void pause_writing() override {
        RecordingProtocol::pause_writing();
        pause_sizes_.push_back(e_.transport->get_write_buffer_size());
        if (on_pause) on_pause();
    }
    void resume_writing() override {
        RecordingProtocol::resume_writing();
        resume_sizes_.push_back(e_.transport->get_write_buffer_size());
    }
    std::function<void()> on_pause;

private:
    Events& e_;
    std::vector<std::size_t>& pause_sizes_;
    std::vector<std::size_t>& resume_sizes_;
};

struct Fixture {
    Events ev;
    EventLoop loop;
    ExceptionLog log{loop};
    std::vector<std::size_t> pauses, resumes;
    SocketPair sp;
    Connection<> conn;
    FlowProtocol* proto = nullptr;
    Fixture() {
        conn = run(loop, loop.connect_accepted_socket(
                             [&] {
                                 auto p = std::make_unique<FlowProtocol>(ev, pauses, resumes);
                                 proto = p.get();
                                 return p;
                             },
                             sp.take_a()));
    }
    Transport& t() { return *conn.transport; }
};

}  // namespace

TEST_SUITE("flow control") {
    TEST_CASE(
        "the default limits are 64 KiB / 16 KiB and get_write_buffer_limits returns (low, high)") {
        Fixture f;
        CHECK(f.t().get_write_buffer_limits() ==
              std::pair<std::size_t, std::size_t>{16 * 1024, 64 * 1024});
    }

    TEST_CASE(
        "set_write_buffer_limits: high alone sets low to high/4, low alone sets high to 4*low") {
        Fixture f;
        f.t().set_write_buffer_limits(1000);
        CHECK(f.t().get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{250, 1000});
        f.t().set_write_buffer_limits(std::nullopt, 100);
        CHECK(f.t().get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{100, 400});
        f.t().set_write_buffer_limits(10, 10);
        CHECK(f.t().get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{10, 10});
        f.t().set_write_buffer_limits();
        CHECK(f.t().get_write_buffer_limits() ==
              std::pair<std::size_t, std::size_t>{16 * 1024, 64 * 1024});
    }

    TEST_CASE("low above high gives std::invalid_argument and leaves the limits as they were") {
        Fixture f;
        f.t().set_write_buffer_limits(100, 50);
        CHECK_THROWS_AS(f.t().set_write_buffer_limits(10, 11), std::invalid_argument);
        CHECK(f.t().get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{50, 100});
    }

    TEST_CASE("pause_writing is called once the buffer goes strictly over the high-water mark") {
        Fixture f;
        f.t().set_write_buffer_limits(10, 5);
        // Writes made in one callback stay buffered until the loop flushes them.
        f.t().write(std::string(10, 'a'));
        CHECK(f.t().get_write_buffer_size() == 10);
        CHECK(f.ev.pauses == 0);  // equal to high: not over it
        f.t().write("b");
        CHECK(f.ev.pauses == 1);  // synchronously, before write() returned
        CHECK(f.pauses == std::vector<std::size_t>{11});
        f.t().write("c");
        CHECK(f.ev.pauses == 1);  // once per pause
        REQUIRE(run_until(f.loop, [&] { return f.ev.resumes == 1; }));
        CHECK(f.resumes.back() <= 5);
        CHECK(peer_read(f.loop, f.sp.b, 12) == std::string(10, 'a') + "bc");
        CHECK(f.ev.order_ok);
        CHECK(f.log.count == 0);
    }

    TEST_CASE("writelines goes through the same flow control") {
        Fixture f;
        f.t().set_write_buffer_limits(8, 0);
        f.t().writelines({"abc", "def", "ghi"});
        CHECK(f.t().get_write_buffer_size() == 9);
        CHECK(f.ev.pauses == 1);
        REQUIRE(run_until(f.loop, [&] { return f.ev.resumes == 1; }));
        CHECK(peer_read(f.loop, f.sp.b, 9) == "abcdefghi");
    }

    TEST_CASE("changing the limits pauses or resumes at once, by the same strict rules") {
        Fixture f;
        f.t().write(std::string(100, 'x'));
        f.t().set_write_buffer_limits(100, 50);
        CHECK(f.ev.pauses == 0);  // at high, not over
        f.t().set_write_buffer_limits(99, 10);
        CHECK(f.ev.pauses == 1);
        f.t().set_write_buffer_limits(200, 99);
        CHECK(f.ev.resumes == 0);  // still above low
        f.t().set_write_buffer_limits(200, 100);
        CHECK(f.ev.resumes == 1);  // at low: resumes
        CHECK(f.ev.order_ok);
        CHECK(peer_read(f.loop, f.sp.b, 100).size() == 100);
    }

    TEST_CASE("high = 0 pauses whenever the buffer is non-empty, and resumes once it is empty") {
        Fixture f;
        f.t().set_write_buffer_limits(0);
        CHECK(f.t().get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{0, 0});
        f.t().write("x");
        CHECK(f.ev.pauses == 1);
        REQUIRE(run_until(f.loop, [&] { return f.ev.resumes == 1; }));
        CHECK(f.resumes == std::vector<std::size_t>{0});
        f.t().write("y");
        CHECK(f.ev.pauses == 2);
        REQUIRE(run_until(f.loop, [&] { return f.ev.resumes == 2; }));
        CHECK(f.ev.order_ok);
    }

    TEST_CASE("low = 0 resumes only when the buffer is empty, with a slow reader") {
        Fixture f;
        f.t().set_write_buffer_limits(64 * 1024, 0);
        const std::size_t total = 8 << 20;
        std::string got;
        std::thread reader([&] {
            // A slow, blocking peer: small reads, so the buffer drains in many steps.
            char buf[4096];
            while (got.size() < total) {
                ssize_t n = ::read(f.sp.b, buf, sizeof buf);
                if (n <= 0) break;
                got.append(buf, static_cast<std::size_t>(n));
            }
        });
        for (int i = 0; i < 8; ++i) f.t().write(std::string(1 << 20, static_cast<char>('a' + i)));
        CHECK(f.ev.pauses == 1);
        REQUIRE(run_until(f.loop, [&] { return f.ev.resumes == 1; }));
        reader.join();
        CHECK(f.resumes == std::vector<std::size_t>{0});
        CHECK(got.size() == total);
        CHECK(f.ev.order_ok);
    }

    TEST_CASE("resume_writing comes at the low-water mark or below, paired with each pause") {
        Fixture f;
        f.t().set_write_buffer_limits(256 * 1024, 128 * 1024);
        std::size_t written = 0;
        const std::size_t total = 32 << 20;
        std::string got;
        std::thread reader([&] {
            char buf[16384];
            while (got.size() < total) {
                ssize_t n = ::read(f.sp.b, buf, sizeof buf);
                if (n <= 0) break;
                got.append(buf, static_cast<std::size_t>(n));
            }
        });
        // A writer that writes whenever it is not paused, as a well-behaved producer does.
        std::function<void()> produce = [&] {
            while (written < total && f.ev.pauses == f.ev.resumes) {
                f.t().write(std::string(32 * 1024, static_cast<char>('a' + written / 32768 % 26)));
                written += 32 * 1024;
            }
            if (written < total) f.loop.call_soon([&] { produce(); });
        };
        f.loop.call_soon([&] { produce(); });
        REQUIRE(run_until(f.loop,
                          [&] { return written == total && f.t().get_write_buffer_size() == 0; }));
        reader.join();
        CHECK(got.size() == total);
        CHECK(f.ev.pauses >= 1);
        CHECK(f.ev.pauses == f.ev.resumes);
        for (std::size_t s : f.pauses) CHECK(s > 256 * 1024);
        for (std::size_t s : f.resumes) CHECK(s <= 128 * 1024);
        CHECK(f.ev.order_ok);
    }

    TEST_CASE("no resume_writing once the transport is closing: abort while paused") {
        Fixture f;
        f.t().set_write_buffer_limits(10);
        f.t().write(std::string(100, 'z'));
        CHECK(f.ev.pauses == 1);
        f.t().abort();
        REQUIRE(run_until(f.loop, [&] { return f.ev.lost == 1; }));
        CHECK(f.ev.resumes == 0);
        CHECK(f.ev.order_ok);
    }

    TEST_CASE("no resume_writing once the transport is closing: close while paused still flushes") {
        Fixture f;
        f.t().set_write_buffer_limits(10);
        f.t().write(std::string(100, 'z'));
        CHECK(f.ev.pauses == 1);
        f.t().close();
        CHECK(peer_read_to_eof(f.loop, f.sp.b) == std::string(100, 'z'));
        REQUIRE(run_until(f.loop, [&] { return f.ev.lost == 1; }));
        CHECK(f.ev.resumes == 0);
        CHECK(!f.ev.lost_error);
    }

    TEST_CASE("a protocol that aborts inside pause_writing gets no resume_writing") {
        Fixture f;
        f.proto->on_pause = [&] { f.t().abort(); };
        f.t().set_write_buffer_limits(10);
        f.t().write(std::string(100, 'z'));
        CHECK(f.ev.pauses == 1);
        CHECK(f.t().is_closing());
        REQUIRE(run_until(f.loop, [&] { return f.ev.lost == 1; }));
        CHECK(f.ev.resumes == 0);
        CHECK(f.ev.order_ok);
        CHECK(f.log.count == 0);
    }
}
