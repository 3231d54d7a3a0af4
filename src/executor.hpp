// SPDX-License-Identifier: Apache-2.0
// The loop's worker pool for run_in_executor/to_thread: threads started on demand up to a
// bound, blocking every signal (signals belong to the loop's signalfd).
#pragma once

#include <aioring/callback.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace aioring::detail {

class Executor {
public:
    explicit Executor(unsigned max_workers) : max_workers_(max_workers) {}
    ~Executor();  // lets running jobs finish, drops queued ones, joins the workers
    void submit(Callback job);
    unsigned max_workers() const { return max_workers_; }
    void set_max_workers(unsigned n) { max_workers_ = n; }

private:
    void work();
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Callback> jobs_;
    std::vector<std::thread> workers_;
    unsigned idle_ = 0;
    unsigned max_workers_;
    bool stopping_ = false;
};

}  // namespace aioring::detail
