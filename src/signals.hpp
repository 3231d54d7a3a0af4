// SPDX-License-Identifier: Apache-2.0
// add_signal_handler's machinery: signals blocked in the loop's thread and read from a signalfd
// on the ring, and a process-wide handler that forwards a signal another thread received.
#pragma once

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <stdexcept>
#include <system_error>

#include <fmt/core.h>

#include "src/loop_core.hpp"

namespace aioring::detail {

// A signal sent to the process goes to any thread that does not block it. The loop's thread
// blocks it (its signalfd reads it there); in any other thread this handler passes it on to
// the loop's thread, so that a worker thread that did not block it cannot lose it or die of it.
extern std::atomic<unsigned long> signal_owner[NSIG];  // the loop thread per signal; 0: none
void forward_signal(int sig);

// Signals are blocked in the loop's thread and read from a signalfd on the ring.
class SignalWatcher final : public uring::Op {
public:
    explicit SignalWatcher(LoopCore& core) : core_(core) { sigemptyset(&mask_); }
    ~SignalWatcher() {
        if (fd_ >= 0) ::close(fd_);
        for (auto& [sig, old] : old_actions_) {
            signal_owner[sig].store(0);
            ::sigaction(sig, &old, nullptr);
        }
        pthread_sigmask(SIG_UNBLOCK, &mask_, nullptr);
    }
    void add(int sig, Callback cb) {
        if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
            throw std::invalid_argument(fmt::format("signal {} cannot be handled", sig));
        handlers_[sig] = std::make_shared<Callback>(std::move(cb));
        if (!old_actions_.count(sig)) {
            struct sigaction sa {};
            sa.sa_handler = forward_signal;
            sigemptyset(&sa.sa_mask);
            sa.sa_flags = SA_RESTART;
            struct sigaction old {};
            ::sigaction(sig, &sa, &old);
            old_actions_[sig] = old;
        }
        signal_owner[sig].store(static_cast<unsigned long>(pthread_self()));
        sigaddset(&mask_, sig);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_BLOCK, &one, nullptr);
        int fd = signalfd(fd_, &mask_, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd < 0) throw std::system_error(errno, std::system_category(), "signalfd");
        if (fd_ < 0) {
            fd_ = fd;
            arm();
        }
    }
    bool remove(int sig) {
        if (handlers_.erase(sig) == 0) return false;
        // Back to what the process had before (asyncio restores the default disposition).
        signal_owner[sig].store(0);
        if (auto it = old_actions_.find(sig); it != old_actions_.end()) {
            ::sigaction(sig, &it->second, nullptr);
            old_actions_.erase(it);
        }
        sigdelset(&mask_, sig);
        signalfd(fd_, &mask_, SFD_CLOEXEC | SFD_NONBLOCK);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
        return true;
    }
    void complete(int res, unsigned) override {
        if (res == static_cast<int>(sizeof info_)) {
            auto it = handlers_.find(static_cast<int>(info_.ssi_signo));
            if (it != handlers_.end()) {
                // Copy the shared callback: the handler may remove or replace itself.
                core_.post([h = it->second] { (*h)(); });
            }
        }
        if (res == -EBADF || res == -ECANCELED) return;
        arm();
    }

private:
    void arm() {
        io_uring_sqe* s = core_.ring.sqe();
        io_uring_prep_read(s, fd_, &info_, sizeof info_, 0);
        io_uring_sqe_set_data(s, static_cast<uring::Op*>(this));
    }
    LoopCore& core_;
    int fd_ = -1;
    sigset_t mask_;
    signalfd_siginfo info_{};
    std::map<int, std::shared_ptr<Callback>> handlers_;
    std::map<int, struct sigaction> old_actions_;
};

}  // namespace aioring::detail
