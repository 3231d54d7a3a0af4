// SPDX-License-Identifier: Apache-2.0
// aioring-load's engine. Each thread owns an EventLoop and its share of the connections, one
// slot each; a connection is a Protocol that writes requests (slices of a fixed pattern for
// echo, rendered templates for framed and http, marked messages for marker) and frames what
// comes back. Every request of the window ends as a reply, a mismatch or a timeout. Nothing on
// the per-message path allocates: timestamps live in a per-connection ring made at start, a
// rendered request in a reused buffer, and writes coalesce in the transport's buffer.
#include "engine.hpp"

#include "marker.hpp"

#include <aioring/aioring.hpp>

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <any>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace aioring::load {

namespace {

std::uint64_t now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
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

// The process's CPU time so far, user and system, in seconds.
double cpu_now() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

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
    std::uint64_t connect_ns = 0;             // when connecting began (for --connect-rate)
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
    std::uint64_t seq_ = 0;  // the datagram outstanding, or the next one to send
    bool outstanding_ = false;
    bool gave_up_ = false;  // seq_ - 1 timed out: its late answer is not a mismatch
    bool paused_ = false;
    bool lost_ = false;
    std::uint64_t sent_at_ = 0;   // or, open loop, when it was due
    std::uint64_t retry_at_ = 0;  // after an ICMP error, wait a little before the next one
    std::uint64_t t0_ = 0;
};

// Where a connection's requests begin: a replacement continues its slot's numbering and, in
// open loop, its schedule.
struct ConnStart {
    std::size_t slot = 0;  // in its worker
    std::uint64_t first_seq = 0;
    std::uint64_t t0 = 0;  // open loop: when request 0 of the slot is due (0: not begun)
};

class Conn final : public Protocol {
public:
    Conn(Worker& w, std::size_t index, ConnStart start);
    ~Conn() override;
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
    // Counts each request unanswered for --timeout as timed out (its late reply, if any, is
    // then not a message); with `at_end`, every request still unanswered, and in open loop every
    // one that fell due in the window but could not be sent.
    void check_timeouts(std::uint64_t now, bool at_end = false);
    // Gives the slot up for a new connection: what is unanswered here counts as timed out, the
    // connection closes, and nothing it does later counts. Returns where the next one starts.
    ConnStart retire();
    // The slot's next connection opens once this one is freed (its fd closed, so its port
    // is back): were it opened at once, a fast churn would hold two ports per slot.
    void reopen_when_freed(ConnStart next) {
        reopen_ = true;
        next_ = next;
    }

private:
    void send(std::uint64_t count, std::uint64_t stamp);
    std::uint64_t sent_at(std::uint64_t seq) const;
    void fill_stream(std::uint64_t now);
    void complete(std::uint64_t now, std::uint64_t bytes);
    void receive_echo(std::string_view data, std::uint64_t now);
    // framed and http: false once the connection was given up (framing lost, server closing).
    bool receive_replies(std::string_view data, std::uint64_t now);
    void receive_markers(std::string_view data, std::uint64_t now);
    // How many more requests this connection may send (--requests-per-connection).
    std::uint64_t allowance() const;
    bool used_up() const;

    Worker& w_;
    std::size_t index_;  // across all threads
    ConnStart start_;
    Transport* t_ = nullptr;
    std::uint64_t seed_ = 0;
    std::uint64_t sent_msgs_ = 0, recv_msgs_ = 0;
    std::uint64_t recv_bytes_ = 0;  // into the current message (echo), or reply (framed, http)
    bool bad_ = false;              // the current message differed somewhere
    bool paused_ = false;
    bool eof_ = false;
    bool lost_ = false;
    bool retired_ = false;
    bool reopen_ = false;
    ConnStart next_{};
    std::vector<std::uint64_t> stamps_;  // send time by message number & mask_
    std::uint64_t mask_ = 0;
    std::uint64_t t0_ = 0;              // open loop: when message 0 is due
    std::uint64_t timed_out_upto_ = 0;  // messages below this number were counted as timed out
    std::uint64_t rng_ = 0;             // {rand:N}
    FramedParser framed_;
    HttpParser http_;
    MarkerScanner marker_;
};

class Worker {
public:
    Worker(const Options& o, Shared& shared, unsigned id, std::size_t first, std::size_t count)
        : o_(o), shared_(shared), id_(id), first_(first), count_(count) {}

    // The thread's body: nothing escapes it. An exception (no event loop for want of file
    // descriptors, say) becomes `fatal`, and the other threads are let go.
    void run();
    // From another thread: ends the measured window at `stop_ns` (no-op once it has ended).
    void request_stop(std::uint64_t stop_ns);
    Stats stats;
    LiveCounters live;
    std::string first_error;
    // --interval-log: the latencies of the current second (loop thread), handed over on request.
    Histogram interval;
    std::mutex handed_m;
    Histogram handed;
    bool handed_ready = false;
    // From another thread: asks the loop to hand `interval` over (false: no loop any more).
    bool request_interval(std::condition_variable& cv);
    std::string fatal;  // why this thread could not do its part: the run is void, exit 1

    // For the connections.
    const Options& o_;
    Phase phase = Phase::connecting;
    std::uint64_t start_ns = 0, warm_ns = 0, end_ns = 0;
    double interval_ns = 0;  // open loop: between two messages of one connection
    std::uint64_t timeout_ns = 0;
    std::uint64_t inflight_cap = 0;
    std::uint64_t live_msgs = 0, live_bytes = 0;

    void error(std::uint64_t Stats::*counter, const std::string& why) {
        ++(stats.*counter);
        if (first_error.empty() && !why.empty()) first_error = why;
        live.errors.store(stats.failures(), std::memory_order_relaxed);
    }
    void publish() {
        live.messages.store(live_msgs, std::memory_order_relaxed);
        live.bytes.store(live_bytes, std::memory_order_relaxed);
    }
    // framed and http: the request, whole when it has no substitutions, else rendered into
    // `scratch` (whose capacity is kept, so a steady state allocates nothing).
    bool constant_request = true;
    std::string request_bytes;
    std::string scratch;
    void render(std::uint64_t seq, std::uint64_t conn, std::uint64_t& rng);
    // Retires `c` and opens a new connection in its slot (while the run lasts).
    void replace(Conn& c);
    // Opens the slot's next connection from the next loop iteration (while the run lasts).
    void reopen(ConnStart start);

private:
    void run_loop();
    // Tells run_load this thread is connected (or gave up) and waits for the start; once.
    void arrive();
    // A connection failed for want of a resource of the tool's own (file descriptors, memory):
    // the run would not measure the server, so it is an error of the run, not a count.
    bool exhausted(const std::system_error& e);
    void prepare_requests();
    void connect_all(EventLoop& loop);
    void reconnect(ConnStart start);
    void reconnected(ConnStart start);
    void connect_udp(EventLoop& loop);
    void tick(EventLoop& loop);
    bool all_lost() const;

    Shared& shared_;
    bool arrived_ = false;
    std::mutex loop_m_;
    EventLoop* loop_ = nullptr;     // while run() has one, for request_stop
    [[maybe_unused]] unsigned id_;  // which worker, for debugging
    std::size_t first_, count_;
    // By slot; null while a slot has no connection.
    std::vector<std::shared_ptr<Transport>> transports_;
    std::vector<Conn*> conns_;
    std::vector<Future<Connection<>>> reconnecting_;
    // Replaced ones, to wait for at the end: not owned (the loop frees each once it is
    // closed), and pruned of the freed as the list grows, so a long churning run stays bounded.
    std::vector<std::weak_ptr<Transport>> retired_;
    std::size_t retired_prune_at_ = 64;
    void keep_retired(const std::shared_ptr<Transport>& t);
    ConnectOptions copts_;
    RequestTemplate http_head_, http_body_;
    bool http_has_body_ = false;
    std::string scratch_body_;
    std::vector<std::shared_ptr<DatagramTransport>> dgram_transports_;
    std::vector<UdpConn*> udp_;
};

Conn::Conn(Worker& w, std::size_t index, ConnStart start)
    : w_(w), index_(index), start_(start), framed_(w.o_.frame), http_(w.o_.method == "HEAD") {
    sent_msgs_ = recv_msgs_ = timed_out_upto_ = start.first_seq;
    t0_ = start.t0;
    rng_ = 0x9e3779b97f4a7c15ull ^ (index * 0x100000001b3ull) ^ start.first_seq;
}

Conn::~Conn() {
    if (reopen_) w_.reopen(next_);
}

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

std::uint64_t Conn::allowance() const {
    const std::uint64_t limit = w_.o_.requests_per_connection;
    if (limit == 0) return ~std::uint64_t{0};
    const std::uint64_t used = sent_msgs_ - start_.first_seq;
    return used < limit ? limit - used : 0;
}

bool Conn::used_up() const {
    const std::uint64_t limit = w_.o_.requests_per_connection;
    return limit != 0 && recv_msgs_ - start_.first_seq >= limit;
}

void Conn::begin() {
    const Options& o = w_.o_;
    // The schedule holds even for a connection already gone: what falls due is counted.
    if (o.rate > 0 && t0_ == 0)
        t0_ = w_.start_ns + static_cast<std::uint64_t>(static_cast<double>(index_) * 1e9 / o.rate);
    if (lost_) return;
    const std::uint64_t now = now_ns();
    if (o.rate > 0) {
        send_due(now);
    } else if (o.mode == Mode::echo) {
        send(std::min<std::uint64_t>(o.pipeline, allowance()), now);
    } else {
        fill_stream(now);
    }
}

// Writes requests sent_msgs_ .. sent_msgs_ + count: for echo one stretch of the pattern, for
// the others one rendered request each; the transport coalesces them into the next sendmsg.
void Conn::send(std::uint64_t count, std::uint64_t stamp) {
    if (count == 0) return;
    if (!stamps_.empty())
        for (std::uint64_t i = 0; i < count; ++i) stamps_[(sent_msgs_ + i) & mask_] = stamp;
    if (w_.o_.protocol == Proto::marker) {
        const std::size_t filler = w_.o_.size - marker_size;
        for (std::uint64_t i = 0; i < count; ++i) {
            w_.scratch.clear();
            append_marker(sent_msgs_ + i, index_, w_.scratch);
            t_->write(std::string_view(w_.scratch));
            for (std::size_t left = filler; left;) {
                const std::size_t n = std::min(left, Pattern::period);
                t_->write(std::string_view(Pattern::at(seed_ + left), n));
                left -= n;
            }
        }
        sent_msgs_ += count;
        return;
    }
    if (w_.o_.protocol != Proto::echo) {
        for (std::uint64_t i = 0; i < count; ++i) {
            if (w_.constant_request) {
                t_->write(w_.request_bytes);
            } else {
                w_.render(sent_msgs_ + i, index_, rng_);
                t_->write(std::string_view(w_.scratch));
            }
        }
        sent_msgs_ += count;
        return;
    }
    const std::size_t size = w_.o_.size;
    std::uint64_t pos = seed_ + sent_msgs_ * size;
    std::uint64_t left = count * size;
    while (left) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(left, Pattern::period));
        t_->write(std::string_view(Pattern::at(pos), n));
        pos += n;
        left -= n;
    }
    sent_msgs_ += count;
}

void Conn::fill_stream(std::uint64_t now) {
    const std::size_t size = w_.o_.size;
    const std::uint64_t batch = std::max<std::uint64_t>(1, (64 * 1024) / size);
    while (!paused_ && !lost_ && w_.phase == Phase::running && now < w_.end_ns) {
        const std::uint64_t inflight = sent_msgs_ - recv_msgs_;
        if (inflight >= w_.inflight_cap) break;
        send(std::min(batch, w_.inflight_cap - inflight), now);
    }
}

void Conn::send_due(std::uint64_t now) {
    if (lost_ || retired_ || w_.phase != Phase::running || now < t0_) return;
    // Nothing due at or after the end is sent, even if the end's timer is a little late: a
    // request sent belongs to the window.
    const std::uint64_t until = std::min(now, w_.end_ns - 1);
    if (until < t0_) return;
    const std::uint64_t due =
        static_cast<std::uint64_t>(static_cast<double>(until - t0_) / w_.interval_ns) + 1;
    if (due <= sent_msgs_) return;
    const std::uint64_t room = w_.inflight_cap - std::min(w_.inflight_cap, sent_msgs_ - recv_msgs_);
    const std::uint64_t n = std::min({due - sent_msgs_, room, allowance()});
    if (n && !paused_) send(n, 0);
}

std::uint64_t Conn::sent_at(std::uint64_t seq) const {
    return w_.o_.rate > 0
               ? t0_ + static_cast<std::uint64_t>(static_cast<double>(seq) * w_.interval_ns)
               : stamps_[seq & mask_];
}

void Conn::check_timeouts(std::uint64_t now, bool at_end) {
    if (retired_) return;
    std::uint64_t seq = std::max(recv_msgs_, timed_out_upto_);
    for (; seq < sent_msgs_; ++seq) {
        const std::uint64_t at = sent_at(seq);
        if (!at_end && now < at + w_.timeout_ns) break;
        if (at >= w_.warm_ns && at < w_.end_ns) w_.error(&Stats::timeouts, "");
    }
    timed_out_upto_ = seq;
    if (!at_end || w_.o_.rate <= 0 || t0_ == 0) return;
    // Due in the window and never sent (the server held the connection's window full, or the
    // connection was gone): unanswered as much as a request that was sent.
    for (;; ++seq) {
        const std::uint64_t at = sent_at(seq);
        if (at >= w_.end_ns) break;
        if (at >= w_.warm_ns) w_.error(&Stats::timeouts, "");
    }
}

ConnStart Conn::retire() {
    // What was sent here and not answered will never be: timed out, now.
    std::uint64_t seq = std::max(recv_msgs_, timed_out_upto_);
    for (; seq < sent_msgs_; ++seq) {
        const std::uint64_t at = sent_at(seq);
        if (at >= w_.warm_ns && at < w_.end_ns) w_.error(&Stats::timeouts, "");
    }
    retired_ = true;
    if (t_ && !lost_) {
        // Closed with a reset, not a FIN: the side that closes first keeps the port in
        // TIME_WAIT for a minute, and a run that reconnects thousands of times a second would
        // use up the ephemeral ports towards the server (connect() then scans the whole range
        // for each new connection, and the loop stalls). Nothing is owed any more.
        const std::any fd = t_->get_extra_info("socket");
        if (const int* s = std::any_cast<int>(&fd)) {
            const linger l{1, 0};
            ::setsockopt(*s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        t_->abort();
    }
    return ConnStart{start_.slot, sent_msgs_, t0_};
}

void Conn::complete(std::uint64_t now, std::uint64_t bytes) {
    // A request belongs to the window it was sent (or, open loop, due) in, wherever its reply
    // falls: then every request of the window is answered, wrong or timed out, exactly once.
    const std::uint64_t sent_at = this->sent_at(recv_msgs_);
    if (recv_msgs_ < timed_out_upto_) [[unlikely]] {
        // Counted as timed out already: a late reply is consumed, not counted again.
    } else if (sent_at >= w_.warm_ns && sent_at < w_.end_ns) {
        if (bad_) {
            w_.error(&Stats::mismatches, "");
        } else {
            ++w_.stats.messages;
            w_.stats.bytes += bytes;
            w_.stats.latency.record(now > sent_at ? now - sent_at : 0);
            if (w_.o_.protocol == Proto::http) ++w_.stats.status[std::min(5, http_.status() / 100)];
        }
    } else if (bad_ && w_.phase != Phase::stopping) {
        w_.error(&Stats::mismatches, "");
    }
    if (!bad_) {
        ++w_.live_msgs;
        w_.live_bytes += bytes;
        // The interval log sees every reply, warm-up included (but not a timed-out one's).
        if (!w_.o_.interval_log.empty() && recv_msgs_ >= timed_out_upto_)
            w_.interval.record(now > sent_at ? now - sent_at : 0);
    }
    bad_ = false;
    ++recv_msgs_;
    recv_bytes_ = 0;
}

void Conn::receive_echo(std::string_view data, std::uint64_t now) {
    const std::size_t size = w_.o_.size;
    while (!data.empty()) {
        if (recv_msgs_ == sent_msgs_) [[unlikely]] {
            // More came back than was sent: the server invented bytes.
            if (w_.phase != Phase::stopping) w_.error(&Stats::mismatches, "");
            break;
        }
        const std::uint64_t pos = seed_ + recv_msgs_ * size + recv_bytes_;
        std::size_t n = std::min<std::size_t>(data.size(), size - recv_bytes_);
        n = std::min<std::size_t>(n, Pattern::period);
        if (std::memcmp(data.data(), Pattern::at(pos), n) != 0) [[unlikely]]
            bad_ = true;
        data.remove_prefix(n);
        recv_bytes_ += n;
        if (recv_bytes_ == size) complete(now, size);
    }
}

bool Conn::receive_replies(std::string_view data, std::uint64_t now) {
    const bool http = w_.o_.protocol == Proto::http;
    while (!data.empty()) {
        if (recv_msgs_ == sent_msgs_) [[unlikely]] {
            if (w_.phase != Phase::stopping)
                w_.error(&Stats::mismatches, "the server sent a reply nobody asked for");
            w_.replace(*this);
            return false;
        }
        const Feed f = http ? http_.feed(data) : framed_.feed(data);
        data.remove_prefix(f.used);
        recv_bytes_ += f.used;
        if (f.status == Feed::Status::bad) [[unlikely]] {
            if (w_.phase != Phase::stopping)
                w_.error(&Stats::mismatches,
                         std::string(http ? "bad HTTP reply: " : "bad reply: ") +
                             (http ? http_.error() : framed_.error()));
            w_.replace(*this);
            return false;
        }
        if (f.status != Feed::Status::reply) continue;
        if (!http) bad_ = framed_.mismatched();
        complete(now, recv_bytes_);
        if (http && !http_.keep_alive()) {
            // The server closes after this reply: carry on from a new connection.
            w_.replace(*this);
            return false;
        }
    }
    return true;
}

void Conn::receive_markers(std::string_view data, std::uint64_t now) {
    while (!data.empty()) {
        const Feed f = marker_.feed(data);
        data.remove_prefix(f.used);
        if (f.status != Feed::Status::reply) continue;
        if (marker_.conn() != index_) continue;  // another connection's (a relay's broadcast)
        const std::uint64_t seq = marker_.seq();
        if (seq < recv_msgs_) continue;  // again, or after a later one: counted already
        if (seq >= sent_msgs_) {
            if (w_.phase != Phase::stopping)
                w_.error(&Stats::mismatches, "a marker of a request not sent");
            continue;
        }
        // The markers skipped over will not come: those requests are lost.
        for (; recv_msgs_ < seq; ++recv_msgs_) {
            if (recv_msgs_ < timed_out_upto_) continue;
            const std::uint64_t at = sent_at(recv_msgs_);
            if (at >= w_.warm_ns && at < w_.end_ns) w_.error(&Stats::timeouts, "");
        }
        complete(now, w_.o_.size);
    }
}

void Conn::data_received(std::string_view data) {
    if (retired_) return;
    const std::uint64_t now = now_ns();
    const std::uint64_t before = recv_msgs_;
    if (w_.o_.protocol == Proto::echo)
        receive_echo(data, now);
    else if (w_.o_.protocol == Proto::marker)
        receive_markers(data, now);
    else if (!receive_replies(data, now))
        return;
    w_.publish();
    if (w_.phase != Phase::running || lost_ || now >= w_.end_ns) return;
    if (used_up()) {
        w_.replace(*this);
        return;
    }
    if (w_.o_.rate > 0) return;  // the ticker sends
    if (w_.o_.mode == Mode::echo) {
        if (recv_msgs_ != before) send(std::min(recv_msgs_ - before, allowance()), now);
    } else {
        fill_stream(now);
    }
}

bool Conn::eof_received() {
    eof_ = true;
    if (retired_) return false;
    if (w_.o_.protocol == Proto::http && w_.phase == Phase::running) {
        // A body that ran to the close ends here; an idle keep-alive connection the server
        // closed is not an error either: both carry on from a new connection.
        const std::uint64_t before = recv_msgs_;
        if (http_.eof() && recv_msgs_ < sent_msgs_) complete(now_ns(), recv_bytes_);
        if (recv_msgs_ == sent_msgs_ && (recv_msgs_ != before || http_.idle())) {
            w_.replace(*this);
            return false;
        }
    }
    if (w_.phase != Phase::stopping)
        w_.error(&Stats::early_closes, "the server closed the connection");
    return false;
}

void Conn::connection_lost(std::error_code ec) {
    lost_ = true;
    if (retired_ || w_.phase == Phase::stopping || eof_) return;  // an EOF was counted already
    if (ec)
        w_.error(&Stats::connect_errors, ec.message());
    else
        w_.error(&Stats::early_closes, "the connection closed early");
}

void Conn::resume_writing() {
    paused_ = false;
    if (w_.phase != Phase::running || retired_) return;
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

void Worker::prepare_requests() {
    if (o_.protocol == Proto::framed) {
        constant_request = o_.request.is_constant();
        request_bytes = std::string(o_.request.constant());
        return;
    }
    if (o_.protocol != Proto::http) return;
    // The request line and headers as a template (so {seq} and friends work in the path, a
    // header or the body); Content-Length follows the body each request has.
    std::string head = o_.method + " " + o_.url_path + " HTTP/1.1\r\n";
    bool host = false;
    for (const std::string& h : o_.headers) {
        const std::string name = h.substr(0, h.find(':'));
        if (name.size() == 4 && (name[0] | 0x20) == 'h' && (name[1] | 0x20) == 'o' &&
            (name[2] | 0x20) == 's' && (name[3] | 0x20) == 't')
            host = true;
    }
    if (!host) {
        const bool v6 = o_.host.find(':') != std::string::npos;
        head += "Host: " + (v6 ? "[" + o_.host + "]" : o_.host) + ":" + std::to_string(o_.port) +
                "\r\n";
    }
    for (const std::string& h : o_.headers) head += h + "\r\n";
    std::string err;
    http_head_.parse(head, false, err);
    http_body_.parse(o_.body, false, err);
    http_has_body_ =
        o_.body_given || o_.method == "POST" || o_.method == "PUT" || o_.method == "PATCH";
    constant_request = http_head_.is_constant() && http_body_.is_constant();
    if (constant_request) {
        std::uint64_t rng = 0;
        render(0, 0, rng);
        request_bytes = scratch;
    }
}

void Worker::render(std::uint64_t seq, std::uint64_t conn, std::uint64_t& rng) {
    scratch.clear();
    if (o_.protocol == Proto::framed) {
        o_.request.render(seq, conn, rng, scratch);
        return;
    }
    http_head_.render(seq, conn, rng, scratch);
    if (http_has_body_) {
        scratch_body_.clear();
        http_body_.render(seq, conn, rng, scratch_body_);
        fmt::format_to(std::back_inserter(scratch), "Content-Length: {}\r\n\r\n",
                       scratch_body_.size());
        scratch += scratch_body_;
    } else {
        scratch += "\r\n";
    }
}

void Worker::connect_all(EventLoop& loop) {
    prepare_requests();
    ConnectOptions& copts = copts_;
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
    conns_.assign(count_, nullptr);
    transports_.assign(count_, nullptr);
    reconnecting_.assign(count_, Future<Connection<>>());
    std::vector<Future<Connection<>>> pending(count_);
    std::size_t opened = 0;  // connects started (or failed to start)
    auto open = [&](std::size_t i) {
        ++opened;
        if (!fatal.empty()) return;
        const std::size_t index = first_ + i;
        try {
            pending[i] = loop.create_connection(
                [this, index, i] {
                    return std::make_unique<Conn>(*this, index, ConnStart{i, 0, 0});
                },
                o_.host, o_.port, copts);
        } catch (const std::system_error& e) {
            if (exhausted(e)) return;
            error(&Stats::connect_errors, e.code().message());
        }
    };
    // --connect-rate: connection k of the run (across threads) opens k / rate seconds in.
    std::vector<TimerHandle> ramp;
    double ramp_s = 0;
    if (o_.connect_rate > 0) {
        ramp_s = static_cast<double>(o_.connections) / o_.connect_rate;
        const std::uint64_t now = now_ns();
        for (std::size_t i = 0; i < count_; ++i) {
            const std::uint64_t at =
                shared_.connect_ns +
                static_cast<std::uint64_t>(static_cast<double>(first_ + i) * 1e9 / o_.connect_rate);
            ramp.push_back(loop.call_later(at > now ? static_cast<double>(at - now) / 1e9 : 0,
                                           [&open, i] { open(i); }));
        }
    } else {
        for (std::size_t i = 0; i < count_; ++i) open(i);
    }
    auto all_done = [&] {
        return opened == count_ && std::all_of(pending.begin(), pending.end(),
                                               [](auto& f) { return !f.valid() || f.done(); });
    };
    run_until(loop, all_done, ramp_s + o_.connect_timeout);
    for (auto& h : ramp) h.cancel();
    for (std::size_t i = 0; i < count_; ++i) {
        auto& f = pending[i];
        if (!f.valid()) continue;
        if (!f.done()) {
            f.cancel();
            error(&Stats::connect_errors, "Connection timed out");
            continue;
        }
        try {
            Connection<> c = f.result();
            conns_[i] = &c.as<Conn>();
            transports_[i] = std::move(c.transport);
            ++stats.connections_made;
        } catch (const std::system_error& e) {
            if (exhausted(e)) continue;
            // OS errors in words ("Connection refused"); TLS errors say more in what().
            error(&Stats::connect_errors, e.code().category() == std::system_category()
                                              ? e.code().message()
                                              : std::string(e.what()));
        } catch (const std::exception& e) {
            error(&Stats::connect_errors, e.what());
        }
    }
    // Let cancelled connects unwind.
    run_until(loop, all_done, 1.0);
}

void Worker::replace(Conn& c) {
    const ConnStart next = c.retire();
    if (conns_[next.slot] == &c) {
        conns_[next.slot] = nullptr;
        keep_retired(transports_[next.slot]);
        transports_[next.slot].reset();
    }
    if (phase == Phase::running) c.reopen_when_freed(next);
}

void Worker::reopen(ConnStart start) {
    if (phase != Phase::running) return;
    loop_->call_soon([this, start] {
        if (phase == Phase::running) reconnect(start);
    });
}

void Worker::keep_retired(const std::shared_ptr<Transport>& t) {
    if (retired_.size() >= retired_prune_at_) {
        std::erase_if(retired_, [](const std::weak_ptr<Transport>& w) { return w.expired(); });
        retired_prune_at_ = std::max<std::size_t>(64, 2 * retired_.size());
    }
    retired_.push_back(t);
}

void Worker::reconnect(ConnStart start) {
    const std::size_t index = first_ + start.slot;
    try {
        reconnecting_[start.slot] = loop_->create_connection(
            [this, index, start] { return std::make_unique<Conn>(*this, index, start); }, o_.host,
            o_.port, copts_);
    } catch (const std::system_error& e) {
        error(&Stats::connect_errors, e.code().message());
        return;
    }
    reconnecting_[start.slot].add_done_callback([this, start] { reconnected(start); });
}

void Worker::reconnected(ConnStart start) {
    Future<Connection<>> f = std::move(reconnecting_[start.slot]);
    reconnecting_[start.slot] = Future<Connection<>>();
    try {
        Connection<> c = f.result();
        ++stats.connections_made;
        if (phase != Phase::running) {
            c.transport->close();
            keep_retired(c.transport);
            return;
        }
        conns_[start.slot] = &c.as<Conn>();
        transports_[start.slot] = std::move(c.transport);
        conns_[start.slot]->begin();
    } catch (const CancelledError&) {
    } catch (const std::exception& e) {
        if (phase != Phase::running) return;
        const auto* se = dynamic_cast<const std::system_error*>(&e);
        error(&Stats::connect_errors, se && se->code().category() == std::system_category()
                                          ? se->code().message()
                                          : std::string(e.what()));
        // Try again a little later rather than in a storm.
        loop_->call_later(0.1, [this, start] {
            if (phase == Phase::running) reconnect(start);
        });
    }
}

void Worker::tick(EventLoop& loop) {
    if (phase != Phase::running) return;
    const std::uint64_t now = now_ns();
    if (o_.rate > 0)
        for (Conn* c : conns_)
            if (c) c->send_due(now);
    for (Conn* c : conns_)
        if (c) c->check_timeouts(now);
    for (UdpConn* c : udp_) c->poll(now);
    // Often enough that a due message waits at most a fraction of a millisecond for its send;
    // in closed loop only timeouts are looked for, a hundred times a second.
    loop.call_later(o_.rate > 0 ? 0.0002 : 0.01, [this, &loop] { tick(loop); });
}

bool Worker::all_lost() const {
    return std::all_of(conns_.begin(), conns_.end(), [](Conn* c) { return !c || c->lost(); }) &&
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
        } catch (const std::system_error& e) {
            if (exhausted(e)) break;
            error(&Stats::connect_errors, e.code().message());
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
            if (exhausted(e)) continue;
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
        t0_ = w_.start_ns +
              static_cast<std::uint64_t>(static_cast<double>(index_) * 1e9 / w_.o_.rate);
    poll(now_ns());
}

bool UdpConn::matches(std::string_view data, std::uint64_t seq) const {
    const std::size_t size = w_.o_.size;
    return data.size() == size &&
           std::memcmp(data.data(), Pattern::at(seed_ + seq * size), size) == 0;
}

void UdpConn::send(std::uint64_t now) {
    const std::size_t size = w_.o_.size;
    sent_at_ = w_.o_.rate > 0
                   ? t0_ + static_cast<std::uint64_t>(static_cast<double>(seq_) * w_.interval_ns)
                   : now;
    outstanding_ = true;
    t_->sendto(std::string_view(Pattern::at(seed_ + seq_ * size), size));
}

void UdpConn::poll(std::uint64_t now) {
    if (lost_ || w_.phase != Phase::running) return;
    if (outstanding_) {
        if (now < sent_at_ || now - sent_at_ < w_.timeout_ns) return;
        outstanding_ = false;  // not answered within a second: lost
        gave_up_ = true;
        ++seq_;
        w_.error(&Stats::timeouts, "");
    }
    if (paused_ || now < retry_at_) return;
    if (w_.o_.rate > 0) {
        if (now < t0_) return;
        const std::uint64_t due =
            static_cast<std::uint64_t>(static_cast<double>(now - t0_) / w_.interval_ns) + 1;
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
        if (sent_at_ >= w_.warm_ns && sent_at_ < w_.end_ns) {
            ++w_.stats.messages;
            w_.stats.bytes += data.size();
            w_.stats.latency.record(now > sent_at_ ? now - sent_at_ : 0);
        }
        if (!w_.o_.interval_log.empty()) w_.interval.record(now > sent_at_ ? now - sent_at_ : 0);
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
    if (ec)
        w_.error(&Stats::connect_errors, ec.message());
    else
        w_.error(&Stats::early_closes, "the datagram endpoint closed early");
}

bool Worker::request_interval(std::condition_variable& cv) {
    std::lock_guard lk(loop_m_);
    if (!loop_) return false;
    loop_->call_soon_threadsafe([this, &cv] {
        {
            std::lock_guard hk(handed_m);
            handed.merge(interval);
            handed_ready = true;
        }
        interval.reset();
        cv.notify_all();
    });
    return true;
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

bool Worker::exhausted(const std::system_error& e) {
    const std::error_code& c = e.code();
    if (c != std::errc::too_many_files_open && c != std::errc::too_many_files_open_in_system &&
        c != std::errc::not_enough_memory && c != std::errc::no_buffer_space)
        return false;
    if (fatal.empty())
        fatal = "cannot open " + std::to_string(o_.connections) + " connections: " + c.message();
    return true;
}

void Worker::arrive() {
    if (arrived_) return;
    arrived_ = true;
    std::unique_lock lk(shared_.m);
    --shared_.connecting;
    shared_.cv.notify_all();
    shared_.cv.wait(lk, [&] { return shared_.go || shared_.abort; });
    start_ns = shared_.start_ns;
    warm_ns = shared_.warm_ns;
    end_ns = shared_.end_ns;
}

void Worker::run() {
    try {
        run_loop();
    } catch (const std::exception& e) {
        fatal = e.what();
    } catch (...) {
        fatal = "unknown exception";
    }
    if (!fatal.empty()) {
        std::lock_guard lk(loop_m_);
        loop_ = nullptr;
    }
    if (!arrived_) {
        // Failed before the start: still let the others go (run_load aborts the run).
        arrived_ = true;
        std::lock_guard lk(shared_.m);
        --shared_.connecting;
        shared_.cv.notify_all();
    }
}

void Worker::run_loop() {
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
        inflight_cap =
            std::max<std::uint64_t>(o_.pipeline, std::max<std::size_t>(16, (4u << 20) / o_.size));
    }
    interval_ns = o_.rate > 0 ? 1e9 * static_cast<double>(o_.connections) / o_.rate : 0;
    // udp keeps the second the contract gave it unless --timeout says otherwise.
    const double timeout = o_.mode == Mode::udp && !o_.timeout_given ? 1.0 : o_.timeout;
    timeout_ns = static_cast<std::uint64_t>(timeout * 1e9);

    if (o_.mode == Mode::udp)
        connect_udp(loop);
    else
        connect_all(loop);
    arrive();
    phase = Phase::running;
    if (!shared_.abort && !shared_.stop_requested && (stats.connections_made > 0)) {
        const std::uint64_t now = now_ns();
        const double to_start = start_ns > now ? static_cast<double>(start_ns - now) / 1e9 : 0;
        loop.call_later(to_start, [this, &loop] {
            for (Conn* c : conns_)
                if (c) c->begin();
            for (UdpConn* c : udp_) c->begin();
            tick(loop);
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
    // is not stuck flushing towards a server that is itself blocked writing to us. What is
    // still unanswered once --timeout has passed since the end counts as timed out.
    const std::uint64_t drain_until = std::max(end_ns, now_ns()) + timeout_ns;
    run_until(
        loop,
        [&] {
            return std::all_of(conns_.begin(), conns_.end(),
                               [](Conn* c) { return !c || c->drained(); }) ||
                   now_ns() >= drain_until;
        },
        3600.0);
    // Connections still being made are not wanted any more.
    for (auto& f : reconnecting_)
        if (f.valid()) f.cancel();
    run_until(
        loop,
        [&] {
            return std::all_of(reconnecting_.begin(), reconnecting_.end(),
                               [](auto& f) { return !f.valid(); });
        },
        2.0);
    const std::uint64_t ended = now_ns();
    for (Conn* c : conns_)
        if (c) c->check_timeouts(ended, true);
    for (Conn* c : conns_)
        if (c) c->finish();
    for (UdpConn* c : udp_) c->finish();
    run_until(
        loop, [&] { return all_lost(); }, 2.0);
    for (auto& t : transports_)
        if (t) t->abort();
    for (auto& t : dgram_transports_) t->abort();
    run_until(
        loop, [&] { return all_lost(); }, 5.0);
    conns_.clear();
    udp_.clear();
    // connection_lost is not the end of a transport: it lives until its last operation has
    // completed (a TLS transport's inner socket a little longer), so the loop keeps running
    // until our handles were the last ones, and a moment more.
    std::vector<std::weak_ptr<BaseTransport>> gone;
    for (auto& t : transports_)
        if (t) gone.push_back(t);
    for (auto& t : retired_) gone.push_back(t);
    retired_.clear();
    for (auto& t : dgram_transports_) gone.push_back(t);
    transports_.clear();
    dgram_transports_.clear();
    run_until(
        loop,
        [&] { return std::all_of(gone.begin(), gone.end(), [](auto& w) { return w.expired(); }); },
        2.0);
    const double grace = loop.time() + 0.02;
    run_until(
        loop, [&] { return loop.time() >= grace; }, 1.0);
    publish();
    std::lock_guard lk(loop_m_);
    loop_ = nullptr;
}

}  // namespace

Outcome run_load(const Options& o, std::FILE* progress, const std::atomic<bool>* interrupt) {
    Outcome out;
    std::FILE* ilog = nullptr;
    if (!o.interval_log.empty() && !(ilog = std::fopen(o.interval_log.c_str(), "w"))) {
        out.fatal = true;
        out.cause = "cannot write --interval-log " + o.interval_log + ": " + std::strerror(errno);
        return out;
    }
    const unsigned nthreads = std::max(1u, std::min(o.threads, o.connections));
    auto interrupted = [&] { return interrupt && interrupt->load(); };
    if (o.start_at > 0) {
        // --start-at: several copies (on several hosts) begin connecting at the same instant.
        for (;;) {
            timespec ts;
            ::clock_gettime(CLOCK_REALTIME, &ts);
            const double left = o.start_at - (static_cast<double>(ts.tv_sec) +
                                              static_cast<double>(ts.tv_nsec) / 1e9);
            if (left <= 0 || interrupted()) break;
            std::this_thread::sleep_for(std::chrono::duration<double>(std::min(left, 0.05)));
        }
    }
    Shared shared;
    shared.connect_ns = now_ns();
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
    std::string fatal;
    for (auto& w : workers) {
        try {
            threads.emplace_back([w = w.get()] { w->run(); });
        } catch (const std::system_error& e) {
            fatal = std::string("cannot start a thread: ") + e.code().message();
            std::lock_guard lk(shared.m);
            shared.connecting -= static_cast<unsigned>(workers.size() - threads.size());
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);

    std::uint64_t made = 0;
    {
        std::unique_lock lk(shared.m);
        shared.cv.wait(lk, [&] { return shared.connecting == 0; });
        for (auto& w : workers) made += w->stats.connections_made;
        for (auto& w : workers)
            if (fatal.empty() && !w->fatal.empty()) fatal = w->fatal;
        if (!fatal.empty()) made = 0;
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
    double cpu_start = -1, cpu_end = -1;
    std::function<std::uint64_t(std::uint64_t)> interval_logger;  // next time it wants a call
    // --interval-log: one JSON line a second, what the second's replies took on every thread.
    std::uint64_t last_i = shared.start_ns, last_i_msgs = 0, last_i_fail = 0;
    std::mutex interval_m;
    std::condition_variable cv;
    Histogram h;
    if (made != 0 && ilog) {
        auto log_interval = [&](std::uint64_t t) {
            std::vector<Worker*> asked;
            for (auto& w : workers)
                if (w->request_interval(cv)) asked.push_back(w.get());
            {
                std::unique_lock lk(interval_m);
                cv.wait_for(lk, std::chrono::milliseconds(200), [&] {
                    return std::all_of(asked.begin(), asked.end(), [](Worker* w) {
                        std::lock_guard hk(w->handed_m);
                        return w->handed_ready;
                    });
                });
            }
            h.reset();
            std::uint64_t msgs = 0, fail = 0;
            for (auto& w : workers) {
                std::lock_guard hk(w->handed_m);
                h.merge(w->handed);
                w->handed.reset();
                w->handed_ready = false;
                msgs += w->live.messages.load(std::memory_order_relaxed);
                fail += w->live.errors.load(std::memory_order_relaxed);
            }
            const double dt = static_cast<double>(t - last_i) / 1e9;
            auto q = [&](double p) {
                return h.count()
                           ? fmt::format("{:.1f}", static_cast<double>(
                                                       p >= 1 ? h.max() : h.value_at_quantile(p)) /
                                                       1000)
                           : std::string("null");
            };
            std::fprintf(
                ilog,
                "{\"t_s\": %.3f, \"interval_s\": %.3f, \"phase\": \"%s\", \"replies\": %llu, "
                "\"replies_per_s\": %.1f, \"failures\": %llu, \"latency_us\": {\"p50\": %s, "
                "\"p90\": %s, \"p99\": %s, \"p999\": %s, \"max\": %s}}\n",
                static_cast<double>(t - shared.start_ns) / 1e9, dt,
                (last_i + t) / 2 < shared.warm_ns ? "warmup" : "measure",
                static_cast<unsigned long long>(msgs - last_i_msgs),
                static_cast<double>(msgs - last_i_msgs) / dt,
                static_cast<unsigned long long>(fail - last_i_fail), q(0.5).c_str(), q(0.9).c_str(),
                q(0.99).c_str(), q(0.999).c_str(), q(1).c_str());
            std::fflush(ilog);
            last_i = t;
            last_i_msgs = msgs;
            last_i_fail = fail;
        };
        interval_logger = [&, log_interval](std::uint64_t t) {
            if (t >= last_i + 1'000'000'000) log_interval(t);
            return last_i + 1'000'000'000;
        };
    }
    if (made != 0) {
        std::uint64_t last_msgs = 0, last_bytes = 0, last_t = shared.start_ns;
        for (;;) {
            std::uint64_t now = now_ns();
            if (cpu_start < 0 && now >= shared.warm_ns) cpu_start = cpu_now();
            if (now >= shared.end_ns) break;
            if (interrupted()) {
                stop_ns = now;
                shared.stop_requested = true;
                for (auto& w : workers) w->request_stop(now);
                break;
            }
            // Wake every 50 ms at most to notice an interrupt; print once a second.
            std::uint64_t next = std::min(shared.end_ns, now + 50'000'000);
            if (cpu_start < 0) next = std::min(next, shared.warm_ns);
            if (progress) next = std::min(next, last_t + 1'000'000'000);
            if (interval_logger) next = std::min(next, interval_logger(now));
            std::this_thread::sleep_for(
                std::chrono::nanoseconds(next > now ? next - now : 1'000'000));
            const std::uint64_t t = now_ns();
            if (interval_logger && t < shared.end_ns) interval_logger(t);
            if (!progress || t < last_t + 1'000'000'000) continue;
            if (t + 100'000'000 >= shared.end_ns) continue;  // the summary follows at once
            std::uint64_t msgs = 0, bytes = 0, errors = 0;
            for (auto& w : workers) {
                msgs += w->live.messages.load(std::memory_order_relaxed);
                bytes += w->live.bytes.load(std::memory_order_relaxed);
                errors += w->live.errors.load(std::memory_order_relaxed);
            }
            const double dt = static_cast<double>(t - last_t) / 1e9;
            const double elapsed =
                t > shared.start_ns ? static_cast<double>(t - shared.start_ns) / 1e9 : 0;
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
    if (cpu_start >= 0) cpu_end = cpu_now();
    for (auto& t : threads) t.join();
    interval_logger = nullptr;
    if (ilog) std::fclose(ilog);
    ilog = nullptr;
    for (auto& w : workers)
        if (fatal.empty() && !w->fatal.empty()) fatal = w->fatal;

    Result& r = out.result;
    r.options = o;
    r.threads = nthreads;
    r.duration_s = o.duration;
    r.cpu_s = cpu_start >= 0 ? cpu_end - cpu_start : 0;
    if (made != 0 && stop_ns < shared.end_ns)  // interrupted: the window ended early
        r.duration_s =
            stop_ns > shared.warm_ns ? static_cast<double>(stop_ns - shared.warm_ns) / 1e9 : 0;
    for (auto& w : workers) {
        r.stats.merge(w->stats);
        if (r.first_error.empty()) r.first_error = w->first_error;
    }
    if (!fatal.empty()) {
        out.fatal = true;
        out.cause = fatal;
        const bool fds = fatal.find("Too many open files") != std::string::npos;
        if (fds)
            out.cause += " (raise the limit, e.g. ulimit -n, or use fewer connections or threads)";
        return out;
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
