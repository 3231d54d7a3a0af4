// SPDX-License-Identifier: Apache-2.0
// The subprocess transport: a child started with posix_spawn, its pipes as pipe
// transports, and its exit watched through a pidfd polled on the ring.
#pragma once

#include <aioring/loop.hpp>
#include <aioring/subprocess.hpp>

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/loop_core.hpp"
#include "src/socket_transport.hpp"
#include "src/transport_base.hpp"

namespace aioring::detail {

// Sets SIGPIPE to SIG_IGN once, unless the program installed its own disposition: a write to
// a pipe whose reader is gone must fail with EPIPE, not kill the process (io_uring's writev on
// a pipe raises SIGPIPE like write(2) does).
void ignore_sigpipe();

class Subprocess final : public SubprocessTransport,
                         public uring::Op,
                         public TransportBase,
                         public std::enable_shared_from_this<Subprocess> {
public:
    Subprocess(LoopCore& core, std::unique_ptr<BaseProtocol> protocol);
    ~Subprocess() override;

    // Starts the child and its pipe transports, then schedules connection_made; `on_made`
    // runs right after it. Throws std::system_error when the child cannot be started.
    void start(const std::vector<std::string>& args, const SubprocessOptions& options,
               Callback on_made);

    // SubprocessTransport
    int get_pid() const override { return pid_; }
    BaseTransport* get_pipe_transport(int fd) const override;
    std::optional<int> get_returncode() const override { return returncode_; }
    void send_signal(int sig) override;
    void terminate() override;
    void kill() override;
    // BaseTransport
    void close() override;
    bool is_closing() const override { return closing_; }
    std::any get_extra_info(std::string_view name, std::any default_value) const override;
    void set_protocol(std::unique_ptr<BaseProtocol> protocol) override;
    BaseProtocol* get_protocol() const override { return protocol_.get(); }
    EventLoop& get_loop() const override { return core_.loop; }

    // The pidfd became readable: the child exited.
    void complete(int res, unsigned flags) override;
    // The loop closed while this was open: the child is killed and reaped (as asyncio's
    // transport does when it is collected unclosed), and no callback runs any more.
    void loop_closed() override;

private:
    // Forwards a pipe transport's callbacks to the SubprocessProtocol, tagged with the fd.
    class PipeProtocol;

    SubprocessProtocol* proto() const { return static_cast<SubprocessProtocol*>(protocol_.get()); }
    void arm_exit_watch();
    void on_pipe_data(int fd, std::string_view data);
    void on_pipe_lost(int fd, std::error_code ec);
    void on_pause_writing();
    void on_resume_writing();
    void try_finish();
    // TransportBase: a failed callback closes (asyncio: the transport is closed).
    void abort_after_failure() override { close(); }
    bool busy() const override { return watch_armed_; }

    std::shared_ptr<StreamTransport> pipes_[3];
    bool pipe_open_[3] = {false, false, false};
    pid_t pid_ = -1;
    int pidfd_ = -1;
    std::optional<int> returncode_;
    bool watch_armed_ = false;
    double kill_grace_ = 3.0;
    TimerHandle kill_timer_;  // close()'s SIGKILL after the grace, cancelled at the exit
};

}  // namespace aioring::detail
