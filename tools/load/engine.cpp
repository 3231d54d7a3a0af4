// aioring-load's engine. Each thread owns an EventLoop and its share of the connections; a
// connection is a Protocol that writes slices of a fixed pattern and memcmps the echo against
// it. Nothing on the per-message path allocates: timestamps live in a per-connection ring made
// at start, and each batch of messages is one write() into the transport's coalescing buffer.
#include "engine.hpp"

#include <aioring/aioring.hpp>

#include <fmt/core.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace aioring::load {

namespace {

std::uint64_t now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

struct PatternTable {
    std::array<char, 2 * Pattern::period> bytes;
    PatternTable() {
        std::uint64_t x = 0x9e3779b97f4a7c15ull;
        for (std::size_t i = 0; i < Pattern::period; ++i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes[i] = static_cast<char>(x >> 32);
        }
        std::memcpy(bytes.data() + Pattern::period, bytes.data(), Pattern::period);
    }
};
const PatternTable pattern_table;

std::size_t pow2_at_least(std::size_t n) {
    std::size_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

}  // namespace

const char* Pattern::at(std::uint64_t pos) { return pattern_table.bytes.data() + pos % period; }

namespace {

// Numbers the progress printer reads from another thread (written by the owning thread only).
struct alignas(64) LiveCounters {
    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> errors{0};
};

enum class Phase { connecting, running, stopping };

// What the threads agree on before the load starts.
struct Shared {
    std::mutex m;
    std::condition_variable cv;
    unsigned connecting = 0;  // threads still connecting
    bool go = false;
    bool abort = false;
    std::uint64_t start_ns = 0, warm_ns = 0, end_ns = 0;
    std::atomic<bool> stop_requested{false};  // interrupted (SIGINT): end the window now
};

class Worker;

// udp mode: one datagram outstanding per socket, answered or given up on after a second.
class UdpConn final : public DatagramProtocol {
public:
    UdpConn(Worker& w, std::size_t index) : w_(w), index_(index) {}
    void connection_made(DatagramTransport& t) override { t_ = &t; }
    void datagram_received(std::string_view data, const SocketAddress&) override;
    void error_received(std::error_code ec) override;
    void connection_lost(std::error_code ec) override;
    void pause_writing() override { paused_ = true; }
    void resume_writing() override { paused_ = false; }

    void begin();
    // Sends the next datagram when one is due (open loop) or none is outstanding (closed), and
    // gives up on one unanswered for a second.
    void poll(std::uint64_t now);
    void finish() {
        if (t_ && !lost_) t_->close();
    }
    bool lost() const { return lost_; }

private:
    void send(std::uint64_t now);
    bool matches(std::string_view data, std::uint64_t seq) const;

    Worker& w_;
    std::size_t index_;
    DatagramTransport* t_ = nullptr;
    std::uint64_t seed_ = 0;
    std::uint64_t seq_ = 0;          // the datagram outstanding, or the next one to send
    bool outstanding_ = false;
    bool gave_up_ = false;           // seq_ - 1 timed out: its late answer is not a mismatch
    bool paused_ = false;
    bool lost_ = false;
    std::uint64_t sent_at_ = 0;      // or, open loop, when it was due
    std::uint64_t retry_at_ = 0;     // after an ICMP error, wait a little before the next one
    std::uint64_t t0_ = 0;
};

class Conn final : public Protocol {
public:
    Conn(Worker& w, std::size_t index) : w_(w), index_(index) {}
    void connection_made(Transport& t) override;
    void data_received(std::string_view data) override;
    bool eof_received() override;
    void connection_lost(std::error_code ec) override;
    void pause_writing() override { paused_ = true; }
    void resume_writing() override;

    void begin();
    // Open loop: sends what has fallen due by `now`.
    void send_due(std::uint64_t now);
    void finish() {
        if (t_ && !lost_) t_->close();
    }
    bool lost() const { return lost_; }
    // Every message sent has come back (or the connection is gone): close() can flush at once.
    bool drained() const { return lost_ || (recv_msgs_ == sent_msgs_ && recv_bytes_ == 0); }

private:
    void send(std::uint64_t count, std::uint64_t stamp);
    void fill_stream(std::uint64_t now);
    void complete(std::uint64_t now);

    Worker& w_;
    std::size_t index_;  // across all threads
    Transport* t_ = nullptr;
    std::uint64_t seed_ = 0;
    std::uint64_t sent_msgs_ = 0, recv_msgs_ = 0;
    std::uint64_t recv_bytes_ = 0;  // into the current message
    bool bad_ = false;              // the current message differed somewhere
    bool paused_ = false;
    bool eof_ = false;
    bool lost_ = false;
    std::vector<std::uint64_t> stamps_;  // send time by message number & mask_
    std::uint64_t mask_ = 0;
    std::uint64_t t0_ = 0;  // open loop: when message 0 is due
};

class Worker {
public:
    Worker(const Options& o, Shared& shared, unsigned id, std::size_t first, std::size_t count)
        : o_(o), shared_(shared), id_(id), first_(first), count_(count) {}

    void run();
    // From another thread: ends the measured window at `stop_ns` (no-op once it has ended).
    void request_stop(std::uint64_t stop_ns);
    Stats stats;
    LiveCounters live;
    std::string first_error;

    // For the connections.
    const Options& o_;
    Phase phase = Phase::connecting;
    std::uint64_t start_ns = 0, warm_ns = 0, end_ns = 0;
    double interval_ns = 0;  // open loop: between two messages of one connection
    std::uint64_t inflight_cap = 0;
    std::uint64_t live_msgs = 0, live_bytes = 0;

    bool in_window(std::uint64_t now) const { return now >= warm_ns && now < end_ns; }
    void error(std::uint64_t Stats::*counter, const std::string& why) {
        ++(stats.*counter);
        if (first_error.empty() && !why.empty()) first_error = why;
        live.errors.store(stats.errors(), std::memory_order_relaxed);
    }
    void publish() {
        live.messages.store(live_msgs, std::memory_order_relaxed);
        live.bytes.store(live_bytes, std::memory_order_relaxed);
    }

private:
    void connect_all(EventLoop& loop);
    void connect_udp(EventLoop& loop);
    void tick(EventLoop& loop);
    bool all_lost() const;

    Shared& shared_;
    std::mutex loop_m_;
    EventLoop* loop_ = nullptr;  // while run() has one, for request_stop
    [[maybe_unused]] unsigned id_;  // which worker, for debugging
    std::size_t first_, count_;
    std::vector<std::shared_ptr<Transport>> transports_;
    std::vector<Conn*> conns_;
    std::vector<std::shared_ptr<DatagramTransport>> dgram_transports_;
    std::vector<UdpConn*> udp_;
};

void Conn::connection_made(Transport& t) {
    t_ = &t;
    seed_ = (index_ * 7919u) % Pattern::period;
    const Options& o = w_.o_;
    std::size_t slots = 1;
    if (o.mode == Mode::echo && o.rate == 0) slots = o.pipeline;
    if (o.mode == Mode::stream) slots = w_.inflight_cap;
    mask_ = pow2_at_least(slots) - 1;
    if (o.rate == 0) stamps_.assign(mask_ + 1, 0);
}

void Conn::begin() {
    if (lost_) return;
    const Options& o = w_.o_;
    const std::uint64_t now = now_ns();
    if (o.rate > 0) {
        t0_ = w_.start_ns + static_cast<std::uint64_t>(static_cast<double>(index_) * 1e9 / o.rate);
        send_due(now);
    } else if (o.mode == Mode::echo) {
        send(o.pipeline, now);
    } else {
        fill_stream(now);
    }
}

// Writes messages sent_msgs_ .. sent_msgs_ + count as one stretch of the pattern: the transport
// coalesces it into the next sendmsg.
void Conn::send(std::uint64_t count, std::uint64_t stamp) {
    const std::size_t size = w_.o_.size;
    if (!stamps_.empty())
        for (std::uint64_t i = 0; i < count; ++i) stamps_[(sent_msgs_ + i) & mask_] = stamp;
    std::uint64_t pos = seed_ + sent_msgs_ * size;
    std::uint64_t left = count * size;
    while (left) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, Pattern::period));
        t_->write(std::string_view(Pattern::at(pos), n));
        pos += n;
        left -= n;
    }
    sent_msgs_ += count;
}

void Conn::fill_stream(std::uint64_t now) {
    const std::size_t size = w_.o_.size;
    const std::uint64_t batch = std::max<std::uint64_t>(1, (64 * 1024) / size);
    while (!paused_ && !lost_ && w_.phase == Phase::running) {
        const std::uint64_t inflight = sent_msgs_ - recv_msgs_;
        if (inflight >= w_.inflight_cap) break;
        send(std::min(batch, w_.inflight_cap - inflight), now);
    }
}

void Conn::send_due(std::uint64_t now) {
    if (lost_ || w_.phase != Phase::running || now < t0_) return;
    const std::uint64_t due = static_cast<std::uint64_t>(static_cast<double>(now - t0_) / w_.interval_ns) + 1;
    if (due <= sent_msgs_) return;
    const std::uint64_t room = w_.inflight_cap - std::min(w_.inflight_cap, sent_msgs_ - recv_msgs_);
    const std::uint64_t n = std::min(due - sent_msgs_, room);
    if (n && !paused_) send(n, 0);
}

void Conn::complete(std::uint64_t now) {
    const std::size_t size = w_.o_.size;
    if (w_.in_window(now)) {
        if (bad_) {
            w_.error(&Stats::mismatches, "");
        } else {
            const std::uint64_t sent_at =
                w_.o_.rate > 0
                    ? t0_ + static_cast<std::uint64_t>(static_cast<double>(recv_msgs_) * w_.interval_ns)
                    : stamps_[recv_msgs_ & mask_];
            ++w_.stats.messages;
            w_.stats.bytes += size;
            w_.stats.latency.record(now > sent_at ? now - sent_at : 0);
        }
    } else if (bad_ && w_.phase != Phase::stopping) {
        w_.error(&Stats::mismatches, "");
    }
    if (!bad_) {
        ++w_.live_msgs;
        w_.live_bytes += size;
    }
    bad_ = false;
    ++recv_msgs_;
    recv_bytes_ = 0;
}

void Conn::data_received(std::string_view data) {
    const std::uint64_t now = now_ns();
    const std::size_t size = w_.o_.size;
    const std::uint64_t before = recv_msgs_;
    while (!data.empty()) {
        if (recv_msgs_ == sent_msgs_) [[unlikely]] {
            // More came back than was sent: the server invented bytes.
            if (w_.phase != Phase::stopping) w_.error(&Stats::mismatches, "");
            break;
        }
        const std::uint64_t pos = seed_ + recv_msgs_ * size + recv_bytes_;
        std::size_t n = std::min<std::size_t>(data.size(), size - recv_bytes_);
        n = std::min<std::size_t>(n, Pattern::period);
        if (std::memcmp(data.data(), Pattern::at(pos), n) != 0) [[unlikely]] bad_ = true;
        data.remove_prefix(n);
        recv_bytes_ += n;
        if (recv_bytes_ == size) complete(now);
    }
    w_.publish();
    if (w_.phase != Phase::running || lost_) return;
    if (w_.o_.rate > 0) return;  // the ticker sends
    if (w_.o_.mode == Mode::echo) {
        if (recv_msgs_ != before) send(recv_msgs_ - before, now);
    } else {
        fill_stream(now);
    }
}

bool Conn::eof_received() {
    eof_ = true;
    if (w_.phase != Phase::stopping) w_.error(&Stats::early_closes, "the server closed the connection");
    return false;
}

void Conn::connection_lost(std::error_code ec) {
    lost_ = true;
    if (w_.phase == Phase::stopping || eof_) return;  // an EOF was counted already
    if (ec) w_.error(&Stats::connect_errors, ec.message());
    else w_.error(&Stats::early_closes, "the connection closed early");
}

void Conn::resume_writing() {
    paused_ = false;
    if (w_.phase != Phase::running) return;
    if (w_.o_.mode == Mode::stream && w_.o_.rate == 0) fill_stream(now_ns());
}

// Polls the loop until `pred` holds or `timeout` seconds pass (set-up and teardown only).
template <class Pred>
bool run_until(EventLoop& loop, Pred pred, double timeout) {
    if (pred()) return true;
    const double deadline = loop.time() + timeout;
    bool ok = false;
    std::function<void()> tick = [&] {
        if (pred()) {
            ok = true;
            loop.stop();
        } else if (loop.time() > deadline) {
            loop.stop();
        } else {
            loop.call_later(0.001, [&] { tick(); });
        }
    };
    loop.call_soon([&] { tick(); });
    loop.run_forever();
    return ok;
}

void Worker::connect_all(EventLoop& loop) {
    ConnectOptions copts;
    if (o_.tls) {
        // Without --cafile nothing is verified: a load test usually meets a self-signed server.
        try {
            if (o_.cafile.empty()) {
                copts.ssl = SslContext::client_insecure();
            } else {
                copts.ssl = SslContext::client();
                copts.ssl->load_verify_locations(o_.cafile);
            }
        } catch (const std::exception& e) {
            for (std::size_t i = 0; i < count_; ++i) error(&Stats::connect_errors, e.what());
            return;
        }
        copts.server_hostname = o_.server_hostname;
    }
    std::vector<Future<Connection<>>> pending;
    pending.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i) {
        const std::size_t index = first_ + i;
        pending.push_back(loop.create_connection(
            [this, index] { return std::make_unique<Conn>(*this, index); }, o_.host, o_.port,
            copts));
    }
    run_until(loop, [&] {
        return std::all_of(pending.begin(), pending.end(), [](auto& f) { return f.done(); });
    }, o_.connect_timeout);
    for (auto& f : pending) {
        if (!f.done()) {
            f.cancel();
            error(&Stats::connect_errors, "Connection timed out");
            continue;
        }
        try {
            Connection<> c = f.result();
            conns_.push_back(&c.as<Conn>());
            transports_.push_back(std::move(c.transport));
            ++stats.connections_made;
        } catch (const std::system_error& e) {
            // OS errors in words ("Connection refused"); TLS errors say more in what().
            error(&Stats::connect_errors, e.code().category() == std::system_category()
                                              ? e.code().message()
                                              : std::string(e.what()));
        } catch (const std::exception& e) {
            error(&Stats::connect_errors, e.what());
        }
    }
    // Let cancelled connects unwind.
    run_until(loop, [&] {
        return std::all_of(pending.begin(), pending.end(), [](auto& f) { return f.done(); });
    }, 1.0);
}

void Worker::tick(EventLoop& loop) {
    if (phase != Phase::running) return;
    const std::uint64_t now = now_ns();
    for (Conn* c : conns_) c->send_due(now);
    for (UdpConn* c : udp_) c->poll(now);
    // Often enough that a due message waits at most a fraction of a millisecond for its send.
    loop.call_later(o_.rate > 0 ? 0.0002 : 0.01, [this, &loop] { tick(loop); });
}

bool Worker::all_lost() const {
    return std::all_of(conns_.begin(), conns_.end(), [](Conn* c) { return c->lost(); }) &&
           std::all_of(udp_.begin(), udp_.end(), [](UdpConn* c) { return c->lost(); });
}

void Worker::connect_udp(EventLoop& loop) {
    std::vector<Future<DatagramConnection<>>> pending;
    pending.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i) {
        const std::size_t index = first_ + i;
        DatagramEndpointOptions opts;
        opts.remote_addr = std::make_pair(o_.host, o_.port);
        try {
            pending.push_back(loop.create_datagram_endpoint(
                [this, index] { return std::make_unique<UdpConn>(*this, index); }, opts));
        } catch (const std::exception& e) {
            error(&Stats::connect_errors, e.what());
        }
    }
    auto all_done = [&] {
        return std::all_of(pending.begin(), pending.end(), [](auto& f) { return f.done(); });
    };
    run_until(loop, all_done, o_.connect_timeout);
    for (auto& f : pending) {
        if (!f.done()) {
            f.cancel();
            error(&Stats::connect_errors, "Connection timed out");
            continue;
        }
        try {
            DatagramConnection<> c = f.result();
            udp_.push_back(&c.as<UdpConn>());
            dgram_transports_.push_back(std::move(c.transport));
            ++stats.connections_made;
        } catch (const std::system_error& e) {
            error(&Stats::connect_errors, e.code().message());
        } catch (const std::exception& e) {
            error(&Stats::connect_errors, e.what());
        }
    }
    run_until(loop, all_done, 1.0);
}

void UdpConn::begin() {
    if (lost_) return;
    seed_ = (index_ * 7919u) % Pattern::period;
    if (w_.o_.rate > 0)
        t0_ = w_.start_ns + static_cast<std::uint64_t>(static_cast<double>(index_) * 1e9 / w_.o_.rate);
    poll(now_ns());
}

bool UdpConn::matches(std::string_view data, std::uint64_t seq) const {
    const std::size_t size = w_.o_.size;
    return data.size() == size && std::memcmp(data.data(), Pattern::at(seed_ + seq * size), size) == 0;
}

void UdpConn::send(std::uint64_t now) {
    const std::size_t size = w_.o_.size;
    sent_at_ = w_.o_.rate > 0 ? t0_ + static_cast<std::uint64_t>(static_cast<double>(seq_) * w_.interval_ns)
                              : now;
    outstanding_ = true;
    t_->sendto(std::string_view(Pattern::at(seed_ + seq_ * size), size));
}

void UdpConn::poll(std::uint64_t now) {
    if (lost_ || w_.phase != Phase::running) return;
    if (outstanding_) {
        if (now - sent_at_ < 1'000'000'000 || now < sent_at_) return;
        outstanding_ = false;  // not answered within a second: lost
        gave_up_ = true;
        ++seq_;
        w_.error(&Stats::timeouts, "");
    }
    if (paused_ || now < retry_at_) return;
    if (w_.o_.rate > 0) {
        if (now < t0_) return;
        const std::uint64_t due = static_cast<std::uint64_t>(static_cast<double>(now - t0_) / w_.interval_ns) + 1;
        if (due <= seq_) return;
    }
    send(now);
}

void UdpConn::datagram_received(std::string_view data, const SocketAddress&) {
    const std::uint64_t now = now_ns();
    if (!outstanding_ || !matches(data, seq_)) {
        // The late answer to a datagram already given up on is not the server's fault.
        if (gave_up_ && seq_ > 0 && matches(data, seq_ - 1)) return;
        if (w_.phase == Phase::stopping) return;
        w_.error(&Stats::mismatches, "");
        if (!outstanding_) return;
    } else {
        if (w_.in_window(now)) {
            ++w_.stats.messages;
            w_.stats.bytes += data.size();
            w_.stats.latency.record(now > sent_at_ ? now - sent_at_ : 0);
        }
        ++w_.live_msgs;
        w_.live_bytes += data.size();
        w_.publish();
    }
    outstanding_ = false;
    gave_up_ = false;
    ++seq_;
    poll(now);
}

void UdpConn::error_received(std::error_code ec) {
    if (w_.phase == Phase::stopping) return;
    w_.error(&Stats::connect_errors, ec.message());
    // The datagram is gone (ICMP said so); try the next one a little later.
    if (outstanding_) {
        outstanding_ = false;
        ++seq_;
    }
    retry_at_ = now_ns() + 100'000'000;
}

void UdpConn::connection_lost(std::error_code ec) {
    lost_ = true;
    if (w_.phase == Phase::stopping) return;
    if (ec) w_.error(&Stats::connect_errors, ec.message());
    else w_.error(&Stats::early_closes, "the datagram endpoint closed early");
}

void Worker::request_stop(std::uint64_t stop_ns) {
    std::lock_guard lk(loop_m_);
    if (!loop_) return;
    loop_->call_soon_threadsafe([this, stop_ns] {
        if (phase != Phase::running) return;
        end_ns = std::min(end_ns, stop_ns);
        phase = Phase::stopping;
        loop_->stop();
    });
}

void Worker::run() {
    LoopOptions lo;
    EventLoop loop(lo);
    {
        std::lock_guard lk(loop_m_);
        loop_ = &loop;
    }
    loop.set_exception_handler([this](EventLoop&, const ExceptionContext& c) {
        std::string why = c.message;
        if (c.exception) {
            try {
                std::rethrow_exception(c.exception);
            } catch (const std::exception& e) {
                why += std::string(": ") + e.what();
            } catch (...) {
            }
        }
        error(&Stats::connect_errors, why);
    });
    if (o_.mode == Mode::stream) {
        const std::size_t window = std::max<std::size_t>(1 << 20, 4 * o_.size);
        inflight_cap = std::max<std::size_t>(1, window / o_.size);
    } else if (o_.rate > 0) {
        // Open loop keeps sending while the server stalls, up to this many per connection.
        inflight_cap = std::max<std::uint64_t>(o_.pipeline, std::max<std::size_t>(16, (4u << 20) / o_.size));
    }
    interval_ns = o_.rate > 0 ? 1e9 * static_cast<double>(o_.connections) / o_.rate : 0;

    if (o_.mode == Mode::udp) connect_udp(loop);
    else connect_all(loop);
    {
        std::unique_lock lk(shared_.m);
        --shared_.connecting;
        shared_.cv.notify_all();
        shared_.cv.wait(lk, [&] { return shared_.go || shared_.abort; });
        start_ns = shared_.start_ns;
        warm_ns = shared_.warm_ns;
        end_ns = shared_.end_ns;
    }
    phase = Phase::running;
    if (!shared_.abort && !shared_.stop_requested && (!conns_.empty() || !udp_.empty())) {
        const std::uint64_t now = now_ns();
        const double to_start = start_ns > now ? static_cast<double>(start_ns - now) / 1e9 : 0;
        loop.call_later(to_start, [this, &loop] {
            for (Conn* c : conns_) c->begin();
            for (UdpConn* c : udp_) c->begin();
            if (o_.rate > 0 || !udp_.empty()) tick(loop);
        });
        const double to_end = end_ns > now ? static_cast<double>(end_ns - now) / 1e9 : 0;
        loop.call_later(to_end, [this, &loop] {
            phase = Phase::stopping;
            loop.stop();
        });
        loop.run_forever();
    }
    phase = Phase::stopping;
    // Nothing is sent any more; take back what is in flight before closing, so that close()
    // is not stuck flushing towards a server that is itself blocked writing to us.
    run_until(loop, [&] {
        return std::all_of(conns_.begin(), conns_.end(), [](Conn* c) { return c->drained(); });
    }, 2.0);
    for (Conn* c : conns_) c->finish();
    for (UdpConn* c : udp_) c->finish();
    run_until(loop, [&] { return all_lost(); }, 2.0);
    for (auto& t : transports_) t->abort();
    for (auto& t : dgram_transports_) t->abort();
    run_until(loop, [&] { return all_lost(); }, 5.0);
    conns_.clear();
    udp_.clear();
    // connection_lost is not the end of a transport: it lives until its last operation has
    // completed (a TLS transport's inner socket a little longer), so the loop keeps running
    // until our handles were the last ones, and a moment more.
    std::vector<std::weak_ptr<BaseTransport>> gone;
    for (auto& t : transports_) gone.push_back(t);
    for (auto& t : dgram_transports_) gone.push_back(t);
    transports_.clear();
    dgram_transports_.clear();
    run_until(loop, [&] {
        return std::all_of(gone.begin(), gone.end(), [](auto& w) { return w.expired(); });
    }, 2.0);
    const double grace = loop.time() + 0.02;
    run_until(loop, [&] { return loop.time() >= grace; }, 1.0);
    publish();
    std::lock_guard lk(loop_m_);
    loop_ = nullptr;
}

}  // namespace

Outcome run_load(const Options& o, std::FILE* progress, const std::atomic<bool>* interrupt) {
    Outcome out;
    const unsigned nthreads = std::max(1u, std::min(o.threads, o.connections));
    Shared shared;
    shared.connecting = nthreads;
    std::vector<std::unique_ptr<Worker>> workers;
    std::size_t first = 0;
    for (unsigned i = 0; i < nthreads; ++i) {
        const std::size_t count = o.connections / nthreads + (i < o.connections % nthreads ? 1 : 0);
        workers.push_back(std::make_unique<Worker>(o, shared, i, first, count));
        first += count;
    }
    // SIGINT and SIGTERM go to this thread, not to the loops (which inherit the mask).
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([w = w.get()] { w->run(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    auto interrupted = [&] { return interrupt && interrupt->load(); };

    std::uint64_t made = 0;
    {
        std::unique_lock lk(shared.m);
        shared.cv.wait(lk, [&] { return shared.connecting == 0; });
        for (auto& w : workers) made += w->stats.connections_made;
        if (made == 0) {
            shared.abort = true;
        } else {
            // A little slack so that every thread is waiting on its loop when the load starts.
            shared.start_ns = now_ns() + 5'000'000;
            shared.warm_ns = shared.start_ns + static_cast<std::uint64_t>(o.warmup * 1e9);
            shared.end_ns = shared.warm_ns + static_cast<std::uint64_t>(o.duration * 1e9);
            shared.go = true;
        }
        shared.cv.notify_all();
    }

    std::uint64_t stop_ns = shared.end_ns;
    if (made != 0) {
        std::uint64_t last_msgs = 0, last_bytes = 0, last_t = shared.start_ns;
        for (;;) {
            std::uint64_t now = now_ns();
            if (now >= shared.end_ns) break;
            if (interrupted()) {
                stop_ns = now;
                shared.stop_requested = true;
                for (auto& w : workers) w->request_stop(now);
                break;
            }
            // Wake every 50 ms at most to notice an interrupt; print once a second.
            std::uint64_t next = std::min(shared.end_ns, now + 50'000'000);
            if (progress) next = std::min(next, last_t + 1'000'000'000);
            std::this_thread::sleep_for(std::chrono::nanoseconds(next > now ? next - now : 1'000'000));
            const std::uint64_t t = now_ns();
            if (!progress || t < last_t + 1'000'000'000) continue;
            if (t + 100'000'000 >= shared.end_ns) continue;  // the summary follows at once
            std::uint64_t msgs = 0, bytes = 0, errors = 0;
            for (auto& w : workers) {
                msgs += w->live.messages.load(std::memory_order_relaxed);
                bytes += w->live.bytes.load(std::memory_order_relaxed);
                errors += w->live.errors.load(std::memory_order_relaxed);
            }
            const double dt = static_cast<double>(t - last_t) / 1e9;
            const double elapsed = t > shared.start_ns ? static_cast<double>(t - shared.start_ns) / 1e9 : 0;
            const double left = static_cast<double>(shared.end_ns - t) / 1e9;
            std::fprintf(progress, "[%5.1f s] %s%.0f msg/s  %.2f MB/s  errors %llu  %.0f s left\n",
                         elapsed, t < shared.warm_ns ? "(warm-up) " : "",
                         static_cast<double>(msgs - last_msgs) / dt,
                         static_cast<double>(bytes - last_bytes) / dt / 1e6,
                         static_cast<unsigned long long>(errors), left);
            std::fflush(progress);
            last_msgs = msgs;
            last_bytes = bytes;
            last_t = t;
        }
    }
    for (auto& t : threads) t.join();

    Result& r = out.result;
    r.options = o;
    r.threads = nthreads;
    r.duration_s = o.duration;
    if (made != 0 && stop_ns < shared.end_ns)  // interrupted: the window ended early
        r.duration_s = stop_ns > shared.warm_ns ? static_cast<double>(stop_ns - shared.warm_ns) / 1e9 : 0;
    for (auto& w : workers) {
        r.stats.merge(w->stats);
        if (r.first_error.empty()) r.first_error = w->first_error;
    }
    if (made == 0) {
        out.no_connection = true;
        out.cause = r.first_error.empty() ? "no connection could be made" : r.first_error;
    }
    // UDP has no handshake: nothing answered and the network said why (ICMP port unreachable
    // arrives as "Connection refused") means there was no server.
    std::uint64_t answered = 0;
    for (auto& w : workers) answered += w->live.messages.load(std::memory_order_relaxed);
    if (o.mode == Mode::udp && answered == 0 && r.stats.connect_errors > 0) {
        out.no_connection = true;
        out.cause = r.first_error;
    }
    return out;
}

}  // namespace aioring::load
