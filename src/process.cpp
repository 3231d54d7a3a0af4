// SPDX-License-Identifier: Apache-2.0
// create_subprocess_exec/create_subprocess_shell: a SubprocessProtocol that hands each pipe to
// a StreamReaderProtocol (asyncio's SubprocessStreamProtocol), and Process's wait/communicate.
#include <aioring/process.hpp>
#include <aioring/sync.hpp>

#include <system_error>

namespace aioring {
namespace detail {

struct ProcessState {
    Event exited;
};

namespace {

// Each pipe gets the protocol a stream connection would have, so StreamReader's flow control
// (pause_reading over 2 * limit) and StreamWriter's drain work on the pipes unchanged.
class SubprocessStreamProtocol final : public SubprocessProtocol {
public:
    SubprocessStreamProtocol(std::shared_ptr<ProcessState> state,
                             const std::shared_ptr<StreamState> (&pipes)[3])
        : state_(std::move(state)) {
        for (int fd = 0; fd < 3; ++fd)
            if (pipes[fd]) protos_[fd] = std::make_unique<StreamReaderProtocol>(pipes[fd]);
    }
    void connection_made(SubprocessTransport& t) override {
        for (int fd = 0; fd < 3; ++fd)
            if (protos_[fd])
                if (auto* pipe = t.pipe_transport<Transport>(fd))
                    protos_[fd]->connection_made(*pipe);
    }
    void pipe_data_received(int fd, std::string_view data) override {
        if (protos_[fd]) protos_[fd]->data_received(data);
    }
    void pipe_connection_lost(int fd, std::error_code ec) override {
        // EOF (no error) or the error: the reader raises it, drain() on stdin raises it.
        if (protos_[fd]) protos_[fd]->connection_lost(ec);
    }
    void pause_writing() override {
        if (protos_[0]) protos_[0]->pause_writing();
    }
    void resume_writing() override {
        if (protos_[0]) protos_[0]->resume_writing();
    }
    // As asyncio (3.12+) wakes wait(): once the child exited and every pipe is closed.
    void connection_lost(std::error_code) override { state_->exited.set(); }

private:
    std::shared_ptr<ProcessState> state_;
    std::unique_ptr<StreamReaderProtocol> protos_[3];
};

Task<Process> start_process(std::vector<std::string> args, ProcessOptions options) {
    EventLoop& loop = co_await get_running_loop();
    auto state = std::make_shared<ProcessState>();
    std::shared_ptr<StreamState> pipes[3];
    const int streams[3] = {options.stdin, options.stdout, options.stderr};
    for (int fd = 0; fd < 3; ++fd)
        if (streams[fd] == subprocess::PIPE) pipes[fd] = StreamReader(options.limit).state();
    auto conn = co_await loop.subprocess_exec(
        [&] { return std::make_unique<SubprocessStreamProtocol>(state, pipes); }, std::move(args),
        static_cast<const SubprocessOptions&>(options));
    Process p(conn.transport, state);
    p.pid = conn.transport->get_pid();
    if (pipes[0]) p.stdin.emplace(pipes[0]);
    if (pipes[1]) p.stdout.emplace(pipes[1]);
    if (pipes[2]) p.stderr.emplace(pipes[2]);
    co_return p;
}

Task<int> wait_task(std::shared_ptr<SubprocessTransport> t, std::shared_ptr<ProcessState> s) {
    co_await s->exited.wait();
    co_return t->get_returncode().value_or(255);
}

Task<std::string> nothing() { co_return std::string(); }

Task<std::string> read_to_eof(StreamReader r) { co_return co_await r.read(); }

Task<std::string> feed_stdin(StreamWriter w, std::string input) {
    if (!input.empty() && !w.is_closing()) {  // closing: the child is gone already
        w.write(std::move(input));
        try {
            co_await w.drain();
        } catch (const std::system_error& e) {
            // The child stopped reading (asyncio ignores BrokenPipeError and
            // ConnectionResetError here too).
            if (e.code() != std::errc::broken_pipe && e.code() != std::errc::connection_reset)
                throw;
        }
    }
    w.close();
    co_return std::string();
}

Task<std::pair<std::string, std::string>> communicate_task(std::shared_ptr<SubprocessTransport> t,
                                                           std::shared_ptr<ProcessState> s,
                                                           std::optional<StreamWriter> in,
                                                           std::optional<StreamReader> out,
                                                           std::optional<StreamReader> err,
                                                           std::string input) {
    // gather cancels all three (and waits for them) if this task is cancelled.
    Task<std::string> feeding = in ? feed_stdin(*in, std::move(input)) : nothing();
    Task<std::string> reading_out = out ? read_to_eof(*out) : nothing();
    Task<std::string> reading_err = err ? read_to_eof(*err) : nothing();
    auto results =
        co_await gather(std::move(feeding), std::move(reading_out), std::move(reading_err));
    co_await wait_task(std::move(t), std::move(s));
    co_return std::pair<std::string, std::string>{std::move(std::get<1>(results)),
                                                  std::move(std::get<2>(results))};
}

}  // namespace
}  // namespace detail

std::optional<int> Process::returncode() const { return transport_->get_returncode(); }

Task<int> Process::wait() const { return detail::wait_task(transport_, s_); }

Task<std::pair<std::string, std::string>> Process::communicate(std::string input) const {
    return detail::communicate_task(transport_, s_, stdin, stdout, stderr, std::move(input));
}

void Process::send_signal(int sig) const { transport_->send_signal(sig); }
void Process::terminate() const { transport_->terminate(); }
void Process::kill() const { transport_->kill(); }

Task<Process> create_subprocess_exec(std::vector<std::string> args, ProcessOptions options) {
    return detail::start_process(std::move(args), std::move(options));
}

Task<Process> create_subprocess_shell(std::string command, ProcessOptions options) {
    return detail::start_process({"/bin/sh", "-c", std::move(command)}, std::move(options));
}

}  // namespace aioring
