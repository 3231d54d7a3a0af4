// SPDX-License-Identifier: Apache-2.0
// getaddrinfo on a small pool of worker threads that block every signal (signals belong to the
// loop's signalfd).
#include "src/resolver.hpp"

#include <netdb.h>
#include <signal.h>

#include <system_error>

#include "src/loop_core.hpp"

namespace aioring::detail {

namespace {
class GaiCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "getaddrinfo"; }
    std::string message(int code) const override { return gai_strerror(code); }
};
constexpr unsigned worker_count = 2;
}  // namespace

const std::error_category& gai_category() {
    static GaiCategory c;
    return c;
}

Resolver::Resolver(LoopCore& core) : core_(core) {}

Resolver::~Resolver() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        jobs_.clear();
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

Future<std::vector<AddrInfo>> Resolver::resolve(std::string host, std::string port, int family,
                                                int type, int protocol, int flags) {
    auto state = std::make_shared<FutureState<std::vector<AddrInfo>>>(core_.loop);
    {
        std::lock_guard lock(mutex_);
        jobs_.push_back(
            Job{std::move(host), std::move(port), family, type, protocol, flags, state});
        if (workers_.size() < worker_count && jobs_.size() > 0) {
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_BLOCK, &all, &old);
            workers_.emplace_back([this] { work(); });
            pthread_sigmask(SIG_SETMASK, &old, nullptr);
        }
    }
    cv_.notify_one();
    return Future<std::vector<AddrInfo>>(state);
}

void Resolver::work() {
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        addrinfo hints{};
        hints.ai_family = job.family;
        hints.ai_socktype = job.type;
        hints.ai_protocol = job.protocol;
        hints.ai_flags = job.flags;
        addrinfo* res = nullptr;
        const char* host = job.host.empty() ? nullptr : job.host.c_str();
        const char* port = job.port.empty() ? nullptr : job.port.c_str();
        int rc = ::getaddrinfo(host, port, &hints, &res);
        std::vector<AddrInfo> out;
        std::error_code ec;
        if (rc == 0) {
            for (addrinfo* a = res; a; a = a->ai_next) {
                out.push_back(AddrInfo{a->ai_family, a->ai_socktype, a->ai_protocol,
                                       a->ai_canonname ? a->ai_canonname : "",
                                       SocketAddress(a->ai_addr, a->ai_addrlen)});
            }
            freeaddrinfo(res);
        } else if (rc == EAI_SYSTEM) {
            ec = std::error_code(errno, std::system_category());
        } else {
            ec = std::error_code(rc, gai_category());
        }
        std::string what = "getaddrinfo(" + job.host + ", " + job.port + ")";
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
        }
        try {
            core_.call_soon_threadsafe([st = std::move(job.result), out = std::move(out), ec,
                                        what = std::move(what)]() mutable {
                if (st->done()) return;  // cancelled meanwhile
                if (ec)
                    st->set_exception(std::make_exception_ptr(std::system_error(ec, what)));
                else
                    st->set_result(std::move(out));
            });
        } catch (const LoopError&) {
            return;  // the loop closed meanwhile
        }
    }
}

}  // namespace aioring::detail
