// SPDX-License-Identifier: Apache-2.0
// getaddrinfo on worker threads, so that resolving never blocks the loop. Results come back
// through call_soon_threadsafe.
#pragma once

#include <aioring/loop.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace aioring::detail {

class LoopCore;

class Resolver {
public:
    explicit Resolver(LoopCore& core);
    ~Resolver();  // joins the workers; jobs not yet started are dropped
    Future<std::vector<AddrInfo>> resolve(std::string host, std::string port, int family, int type,
                                          int protocol, int flags);

private:
    struct Job {
        std::string host, port;
        int family, type, protocol, flags;
        std::shared_ptr<FutureState<std::vector<AddrInfo>>> result;
    };
    void work();

    LoopCore& core_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Job> jobs_;
    std::vector<std::thread> workers_;
    bool stopping_ = false;
};

// The error category of getaddrinfo's EAI_* codes (message: gai_strerror).
const std::error_category& gai_category();

}  // namespace aioring::detail
