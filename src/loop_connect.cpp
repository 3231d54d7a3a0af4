// SPDX-License-Identifier: Apache-2.0
// create_connection, create_unix_connection, connect_accepted_socket: resolve without blocking
// the loop, connect through the ring (one address after the other, or happy eyeballs' staggered
// race), then wrap in a transport.
#include <aioring/loop.hpp>

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <system_error>

#include "src/connect.hpp"
#include "src/op_awaiter.hpp"
#include "src/socket_transport.hpp"
#include "src/socket_util.hpp"
#include "src/ssl_transport.hpp"

namespace aioring {
namespace detail {

FdGuard::~FdGuard() {
    if (fd >= 0) ::close(fd);
}

std::vector<AddrInfo> interleave_addrinfos(std::vector<AddrInfo> infos, int first_family_count) {
    if (first_family_count <= 0 || infos.empty()) return infos;
    std::vector<std::vector<AddrInfo>> by_family;  // in the order the families first appear
    for (AddrInfo& ai : infos) {
        auto it = std::find_if(by_family.begin(), by_family.end(),
                               [&](const auto& g) { return g.front().family == ai.family; });
        if (it == by_family.end())
            by_family.emplace_back().push_back(std::move(ai));
        else
            it->push_back(std::move(ai));
    }
    std::vector<AddrInfo> out;
    out.reserve(infos.size());
    std::vector<std::size_t> taken(by_family.size(), 0);
    // The first family's first count-1 addresses go alone; then one of each family in turn.
    auto& first = by_family.front();
    const std::size_t lead =
        std::min(first.size(), static_cast<std::size_t>(first_family_count - 1));
    for (; taken[0] < lead; ++taken[0]) out.push_back(std::move(first[taken[0]]));
    while (out.size() < infos.size()) {
        for (std::size_t f = 0; f < by_family.size(); ++f)
            if (taken[f] < by_family[f].size()) out.push_back(std::move(by_family[f][taken[f]++]));
    }
    return out;
}

namespace {

// Wraps `fd` in a transport and completes once connection_made has run.
Future<Connection<>> wrap(LoopCore& core, int fd, ProtocolFactory& factory) {
    auto fut = Future<Connection<>>(core.loop);
    std::unique_ptr<BaseProtocol> protocol;
    try {
        protocol = factory();
    } catch (...) {
        ::close(fd);
        fut.set_exception(std::current_exception());
        return fut;
    }
    BaseProtocol* p = protocol.get();
    auto holder = std::make_shared<std::shared_ptr<SocketTransport>>();
    try {
        *holder = make_socket_transport(core, fd, std::move(protocol), [fut, holder, p] {
            if (!fut.done())
                fut.set_result(Connection<>{std::move(*holder), p});
            else if (*holder)
                (*holder)->abort();  // cancelled meanwhile: nobody will use it
        });
    } catch (...) {
        ::close(fd);
        fut.set_exception(std::current_exception());
    }
    return fut;
}

// What one connection attempt ended with, when it failed.
struct AttemptError {
    std::error_code ec;
    std::string context;  // empty: the connect itself failed
};

// The state the attempts of one create_connection share. The race coroutine starts the
// attempts and waits on `wake`; an attempt records its outcome here the moment its connect
// completes, so that a winner cancels the others in the same completion.
struct Race {
    Race(EventLoop& l, std::size_t n) : loop(l), errors(n) { attempts.reserve(n); }
    ~Race() { drop_winner(); }
    Race(const Race&) = delete;
    Race& operator=(const Race&) = delete;

    static constexpr std::size_t none = static_cast<std::size_t>(-1);
    EventLoop& loop;
    std::vector<Future<void>> attempts;  // the attempt tasks, in the order they started
    std::vector<std::optional<AttemptError>> errors;
    std::size_t winner = none;
    int winner_fd = -1;
    bool over = false;  // won or given up: a connection completing now is closed
    bool timer_fired = false;
    Future<void> wake;

    void notify() {
        if (wake.valid() && !wake.done()) wake.set_result();
    }
    void failed(std::size_t i, std::error_code ec, std::string context) {
        errors[i] = AttemptError{ec, std::move(context)};
        notify();
    }
    // Takes `fd` if attempt `i` is the first to connect.
    bool connected(std::size_t i, int fd) {
        if (over) return false;
        over = true;
        winner = i;
        winner_fd = fd;
        cancel_pending(i);
        notify();
        return true;
    }
    void give_up() {
        over = true;
        cancel_pending(none);
    }
    void cancel_pending(std::size_t except) {
        // A closed loop has destroyed the attempts' frames: their futures can't be cancelled.
        if (loop.is_closed()) return;
        for (std::size_t j = 0; j < attempts.size(); ++j)
            if (j != except && !attempts[j].done()) attempts[j].cancel();
    }
    bool all_done() const {
        for (const auto& a : attempts)
            if (!a.done()) return false;
        return true;
    }
    void drop_winner() {
        if (winner_fd >= 0) ::close(std::exchange(winner_fd, -1));
    }
    // Why every attempt failed: one attempt gives its own error; several give asyncio's
    // "Multiple exceptions: ..." with `ADDR: cause` for each, and the error code they share
    // (or the last one's).
    std::exception_ptr error(const std::vector<AddrInfo>& infos) const;
};

// std::system_error with a message of its own (system_error's would append the code's).
class ConnectError final : public std::system_error {
public:
    ConnectError(std::error_code ec, const std::string& what)
        : std::system_error(ec), what_(what) {}
    const char* what() const noexcept override { return what_.what(); }

private:
    std::runtime_error what_;  // copies without throwing
};

std::exception_ptr Race::error(const std::vector<AddrInfo>& infos) const {
    const std::error_code cancelled = std::make_error_code(std::errc::operation_canceled);
    auto error_of = [&](std::size_t i) {
        return errors[i] ? *errors[i] : AttemptError{cancelled, "connect task ended"};
    };
    const std::size_t n = attempts.size();
    if (n == 1) {
        const AttemptError e = error_of(0);
        const std::string context = e.context.empty()
                                        ? "connect to " + infos[0].address.to_string() + " failed"
                                        : e.context;
        return std::make_exception_ptr(std::system_error(e.ec, context));
    }
    std::string what = "Multiple exceptions: ";
    for (std::size_t i = 0; i < n; ++i) {
        const AttemptError e = error_of(i);
        if (i) what += "; ";
        what += infos[i].address.to_string() + ": ";
        if (!e.context.empty()) what += e.context + ": ";
        what += e.ec.message();
    }
    return std::make_exception_ptr(ConnectError(error_of(n - 1).ec, what));
}

// One attempt: a socket of the address's family, bound to the first matching local address
// if local_addr was given, connected through the ring. Its outcome goes to the race; if the
// race is over (or this task is cancelled) the socket is closed.
Task<void> attempt_task(std::shared_ptr<Race> race, std::size_t i, AddrInfo ai,
                        std::shared_ptr<const std::vector<AddrInfo>> locals) {
    LoopCore& core = race->loop.core();
    const SocketAddress addr = ai.address;
    FdGuard fd(::socket(ai.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) {
        race->failed(i, std::error_code(errno, std::system_category()), "socket()");
        co_return;
    }
    if (locals) {
        std::optional<AttemptError> bind_error;
        bool bound = false;
        for (const AddrInfo& l : *locals) {
            if (l.family != ai.family) continue;
            if (::bind(fd.fd, l.address.get(), l.address.length) == 0) {
                bound = true;
                break;
            }
            bind_error =
                AttemptError{std::error_code(errno, std::system_category()),
                             "error while attempting to bind on address " + l.address.to_string()};
        }
        if (!bound) {
            if (!bind_error)
                bind_error = AttemptError{std::make_error_code(std::errc::address_not_available),
                                          "no local_addr of the same family"};
            race->failed(i, bind_error->ec, std::move(bind_error->context));
            co_return;
        }
    }
    const int res = co_await await_op(
        core, [&](io_uring_sqe* s) { io_uring_prep_connect(s, fd.fd, addr.get(), addr.length); });
    if (res != 0) {
        race->failed(i, std::error_code(-res, std::system_category()), {});
        co_return;
    }
    if (race->connected(i, fd.fd)) fd.release();
}

// asyncio's staggered race (base_events.create_connection with happy_eyeballs_delay): attempt
// k+1 starts when attempt k fails, or `delay` seconds after attempt k started while it is still
// pending; without a delay only the failure starts the next one (one address after the other).
// The first attempt to connect wins and the others are cancelled. The task returns only once
// every attempt has ended, so no socket of a losing attempt outlives it, even when cancelled.
Task<Connection<>> race_task(EventLoop& loop, ProtocolFactory factory, std::vector<AddrInfo> infos,
                             std::vector<AddrInfo> locals, std::string host,
                             ConnectOptions options) {
    LoopCore& core = loop.core();
    if (infos.empty())
        throw std::system_error(std::make_error_code(std::errc::address_not_available),
                                "getaddrinfo() returned an empty list for " + host);
    const int interleave = options.interleave.value_or(options.happy_eyeballs_delay ? 1 : 0);
    if (interleave > 0) infos = interleave_addrinfos(std::move(infos), interleave);
    std::shared_ptr<const std::vector<AddrInfo>> local_list;
    if (options.local_addr)
        local_list = std::make_shared<const std::vector<AddrInfo>>(std::move(locals));

    const std::size_t n = infos.size();
    auto race = std::make_shared<Race>(loop, n);
    const std::weak_ptr<Race> weak = race;
    TimerHandle timer;
    std::exception_ptr error;
    try {
        for (;;) {
            if (race->winner != Race::none) break;
            const std::size_t started = race->attempts.size();
            const bool latest_ended = started == 0 || race->attempts.back().done();
            if (started < n && (latest_ended || race->timer_fired)) {
                auto task = attempt_task(race, started, infos[started], local_list);
                race->attempts.push_back(loop.create_task(std::move(task)));
                race->attempts.back().add_done_callback([weak] {
                    if (auto r = weak.lock()) r->notify();
                });
                race->timer_fired = false;
                timer.cancel();
                if (options.happy_eyeballs_delay && started + 1 < n)
                    timer = loop.call_later(*options.happy_eyeballs_delay, [weak] {
                        if (auto r = weak.lock()) {
                            r->timer_fired = true;
                            r->notify();
                        }
                    });
                continue;
            }
            if (started == n && race->all_done()) break;
            race->wake = loop.create_future<void>();
            Future<void> woken = race->wake;
            co_await woken;
        }
    } catch (...) {
        error = std::current_exception();
    }
    timer.cancel();
    race->give_up();
    // The losers were cancelled: wait until their sockets are closed.
    while (!race->all_done()) {
        race->wake = loop.create_future<void>();
        Future<void> woken = race->wake;
        try {
            co_await woken;
        } catch (...) {
            error = std::current_exception();
            break;
        }
    }
    race->wake = {};
    if (error) {
        race->drop_winner();
        std::rethrow_exception(error);
    }
    if (race->winner == Race::none) std::rethrow_exception(race->error(infos));

    const int sock = std::exchange(race->winner_fd, -1);
    if (options.ssl) {
        auto handshake = ssl_connect(core, sock, factory, options, host);
        co_return co_await handshake;
    }
    auto wrapped = wrap(core, sock, factory);
    auto conn = co_await wrapped;
    if (!options.nodelay && !conn.transport->is_closing()) {
        // The transport turned TCP_NODELAY on, as asyncio does; the option turns it off.
        int zero = 0;
        ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero);
    }
    co_return conn;
}

Task<std::vector<AddrInfo>> resolve_local(EventLoop& loop, const ConnectOptions& options) {
    if (!options.local_addr) co_return std::vector<AddrInfo>{};
    auto resolving = resolve(loop, options.local_addr->first, options.local_addr->second,
                             options.family, SOCK_STREAM, AI_PASSIVE);
    co_return co_await std::move(resolving);
}

Task<Connection<>> connect_task(EventLoop& loop, ProtocolFactory factory, std::string host,
                                std::uint16_t port, ConnectOptions options) {
    auto resolving = resolve(loop, host, port, options.family, SOCK_STREAM, options.flags);
    auto infos = co_await std::move(resolving);
    auto resolving_local = resolve_local(loop, options);
    auto locals = co_await std::move(resolving_local);
    auto racing = race_task(loop, std::move(factory), std::move(infos), std::move(locals),
                            std::move(host), std::move(options));
    co_return co_await std::move(racing);
}

Task<Connection<>> addresses_task(EventLoop& loop, ProtocolFactory factory,
                                  std::vector<AddrInfo> infos, std::string host,
                                  ConnectOptions options) {
    auto resolving_local = resolve_local(loop, options);
    auto locals = co_await std::move(resolving_local);
    auto racing = race_task(loop, std::move(factory), std::move(infos), std::move(locals),
                            std::move(host), std::move(options));
    co_return co_await std::move(racing);
}

void check_race_options(const ConnectOptions& o) {
    if (o.happy_eyeballs_delay && !(*o.happy_eyeballs_delay >= 0))
        throw std::invalid_argument(
            "happy_eyeballs_delay must be a non-negative number of seconds");
    if (o.interleave && *o.interleave < 0)
        throw std::invalid_argument("interleave must not be negative");
}

Task<Connection<>> unix_connect_task(EventLoop& loop, ProtocolFactory factory, std::string path) {
    LoopCore& core = loop.core();
    const SocketAddress addr = SocketAddress::from_unix(path);
    FdGuard fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) throw std::system_error(errno, std::system_category(), "socket()");
    int res = co_await await_op(
        core, [&](io_uring_sqe* s) { io_uring_prep_connect(s, fd.fd, addr.get(), addr.length); });
    if (res != 0)
        throw std::system_error(-res, std::system_category(), "connect to " + path + " failed");
    co_return co_await wrap(core, fd.release(), factory);
}

}  // namespace
}  // namespace detail

Future<Connection<>> EventLoop::create_connection(ProtocolFactory factory, std::string host,
                                                  std::uint16_t port, ConnectOptions options) {
    if (options.sock >= 0) {
        if (!host.empty()) throw std::invalid_argument("host and sock cannot both be given");
        if (options.ssl) return detail::ssl_connect(*core_, options.sock, factory, options, {});
        return connect_accepted_socket(std::move(factory), options.sock);
    }
    detail::check_race_options(options);
    return create_task(
        detail::connect_task(*this, std::move(factory), std::move(host), port, std::move(options)));
}

namespace detail {
Future<Connection<>> connect_to_addresses(EventLoop& loop, ProtocolFactory factory,
                                          std::vector<AddrInfo> addresses, std::string host,
                                          ConnectOptions options) {
    check_race_options(options);
    return loop.create_task(addresses_task(loop, std::move(factory), std::move(addresses),
                                           std::move(host), std::move(options)));
}
}  // namespace detail

Future<Connection<>> EventLoop::create_unix_connection(ProtocolFactory factory, std::string path) {
    return create_task(detail::unix_connect_task(*this, std::move(factory), std::move(path)));
}

namespace {
Task<Connection<>> unix_connect_task(EventLoop& loop, ProtocolFactory factory, std::string path,
                                     ConnectOptions options) {
    detail::LoopCore& core = loop.core();
    const SocketAddress addr = SocketAddress::from_unix(path);
    detail::FdGuard fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) throw std::system_error(errno, std::system_category(), "socket()");
    int res = co_await detail::await_op(
        core, [&](io_uring_sqe* s) { io_uring_prep_connect(s, fd.fd, addr.get(), addr.length); });
    if (res != 0)
        throw std::system_error(-res, std::system_category(), "connect to " + path + " failed");
    co_return co_await detail::ssl_connect(core, fd.release(), factory, options, {});
}
}  // namespace

Future<Connection<>> EventLoop::create_unix_connection(ProtocolFactory factory, std::string path,
                                                       ConnectOptions options) {
    if (!options.ssl) return create_unix_connection(std::move(factory), std::move(path));
    if (options.server_hostname.empty() && options.ssl->check_hostname())
        throw std::invalid_argument("check_hostname requires server_hostname");
    return create_task(
        unix_connect_task(*this, std::move(factory), std::move(path), std::move(options)));
}

Future<Connection<>> EventLoop::connect_accepted_socket(ProtocolFactory factory, int fd) {
    if (fd < 0) throw std::invalid_argument("connect_accepted_socket: bad file descriptor");
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        throw std::invalid_argument("connect_accepted_socket needs a SOCK_STREAM socket");
    return detail::wrap(*core_, fd, factory);
}

}  // namespace aioring
