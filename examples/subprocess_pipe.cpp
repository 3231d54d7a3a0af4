// SPDX-License-Identifier: Apache-2.0
// subprocess_pipe [--shell] CMD [ARG...]: a transparent wrapper. Our stdin goes to the child's
// stdin and its stdout/stderr to ours, through connect_read_pipe, connect_write_pipe and
// subprocess_exec, with flow control both ways; we exit as the child did (128 + N for signal N).
#include <aioring/aioring.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "cli.hpp"

using namespace aioring;

namespace {

const char* const usage =
    "usage: subprocess_pipe [--shell] CMD [ARG...]\n"
    "  Runs CMD with its stdin, stdout and stderr connected to ours through pipes, and exits\n"
    "  with its exit status (128 + N if signal N killed it; 127 if it cannot be started).\n"
    "  Options end at CMD. --shell: CMD is one string for /bin/sh -c (ARGs become $0, $1...).\n"
    "  SIGTERM or SIGINT terminates the child.\n";

// What the protocols share: the child and our own three streams.
struct State {
    EventLoop& loop;
    std::shared_ptr<SubprocessTransport> child;
    std::shared_ptr<ReadTransport> in;       // our stdin
    std::shared_ptr<WriteTransport> out[3];  // [1] our stdout, [2] our stderr
    Future<void> child_done, in_done, out_done[3];
    bool terminate_requested = false;

    explicit State(EventLoop& l)
        : loop(l),
          child_done(l),
          in_done(l),
          out_done{Future<void>(l), Future<void>(l), Future<void>(l)} {}

    WriteTransport* child_stdin() const {
        auto* w = child ? child->pipe_transport<WriteTransport>(0) : nullptr;
        return w && !w->is_closing() ? w : nullptr;
    }
    ReadTransport* child_output(int fd) const {
        return child ? child->pipe_transport<ReadTransport>(fd) : nullptr;
    }
};

// The child: its output goes to ours; its stdin's back-pressure pauses our stdin.
class Child : public SubprocessProtocol {
public:
    explicit Child(State& s) : s_(s) {}
    void pipe_data_received(int fd, std::string_view data) override {
        if (auto& w = s_.out[fd]; w && !w->is_closing()) w->write(data);
    }
    void pipe_connection_lost(int fd, std::error_code) override {
        // The child's stdin is gone: what we still read could go nowhere.
        if (fd == 0 && s_.in && !s_.in->is_closing()) s_.in->close();
    }
    void pause_writing() override {
        if (s_.in) s_.in->pause_reading();
    }
    void resume_writing() override {
        if (s_.in) s_.in->resume_reading();
    }
    void connection_lost(std::error_code) override { s_.child_done.set_result(); }

private:
    State& s_;
};

// Our stdin, copied to the child's; its EOF closes the child's stdin.
class Input : public Protocol {
public:
    explicit Input(State& s) : s_(s) {}
    void data_received(std::string_view data) override {
        if (auto* w = s_.child_stdin()) w->write(data);
    }
    bool eof_received() override {
        if (auto* w = s_.child_stdin()) w->write_eof();
        return false;
    }
    void connection_lost(std::error_code ec) override {
        if (auto* w = s_.child_stdin(); w && ec) w->write_eof();  // a read error ends input too
        s_.in_done.set_result();
    }

private:
    State& s_;
};

// Our stdout or stderr; while it is full, the child's pipe is not read, so the child blocks.
class Output : public Protocol {
public:
    Output(State& s, int fd) : s_(s), fd_(fd) {}
    void pause_writing() override {
        if (auto* r = s_.child_output(fd_)) r->pause_reading();
    }
    void resume_writing() override {
        if (auto* r = s_.child_output(fd_)) r->resume_reading();
    }
    void connection_lost(std::error_code) override {
        // Our reader went away (or we are done): close the child's pipe too, so that the child
        // sees the broken pipe as it would without us in between.
        if (auto* r = s_.child_output(fd_)) r->close();
        s_.out_done[fd_].set_result();
    }

private:
    State& s_;
    int fd_;
};

// A close-on-exec copy above 2, so that our 0-2 stay as they are.
int dup_std(int fd) { return ::fcntl(fd, F_DUPFD_CLOEXEC, 3); }

Task<int> main_task(EventLoop& loop, std::vector<std::string> argv) {
    State s(loop);
    auto on_signal = [&s] {
        if (s.child && !s.child->get_returncode())
            s.child->terminate();
        else
            s.terminate_requested = true;
    };
    loop.add_signal_handler(SIGTERM, on_signal);
    loop.add_signal_handler(SIGINT, on_signal);

    for (int fd : {1, 2}) {
        int copy = dup_std(fd);
        if (copy < 0) {
            s.out_done[fd].set_result();
            continue;
        }
        auto c = co_await loop.connect_write_pipe(
            [&s, fd] { return std::make_unique<Output>(s, fd); }, copy);
        s.out[fd] = c.transport;
    }
    std::string failure;
    try {
        auto c = co_await loop.subprocess_exec([&s] { return std::make_unique<Child>(s); }, argv);
        s.child = c.transport;
    } catch (const std::exception& e) {
        failure = e.what();
    }
    if (!s.child) {
        std::fprintf(stderr, "subprocess_pipe: %s\n", failure.c_str());
        for (int fd : {1, 2})
            if (s.out[fd]) s.out[fd]->close();
        co_await s.out_done[1];
        co_await s.out_done[2];
        co_return 127;
    }
    if (s.terminate_requested) s.child->terminate();
    if (int copy = dup_std(0); copy >= 0) {
        auto c = co_await loop.connect_read_pipe([&s] { return std::make_unique<Input>(s); }, copy);
        s.in = c.transport;
        // The child may have exited already (the wrapper still waits for its output).
        if (!s.child_stdin()) s.in->close();
    } else {
        if (auto* w = s.child_stdin()) w->write_eof();
        s.in_done.set_result();
    }

    co_await s.child_done;
    const int rc = s.child->get_returncode().value_or(255);
    // Everything the child wrote goes out before we exit.
    for (int fd : {1, 2})
        if (s.out[fd]) s.out[fd]->close();
    if (s.in) s.in->close();
    co_await s.out_done[1];
    co_await s.out_done[2];
    co_await s.in_done;
    loop.remove_signal_handler(SIGTERM);
    loop.remove_signal_handler(SIGINT);
    co_return rc >= 0 ? rc : 128 - rc;
}

}  // namespace

int program(int argc, char** argv) {
    cli::Args args(argc, argv, usage, {}, {"shell"}, /*stop_at_positional=*/true);
    std::vector<std::string> cmd = args.positional();
    if (cmd.empty()) args.fail("missing CMD");
    if (args.flag("shell")) cmd.insert(cmd.begin(), {"/bin/sh", "-c"});
    // A closed 0, 1 or 2 becomes /dev/null (EOF in, output dropped) before the loop opens its
    // ring and eventfd, which would otherwise take those numbers.
    for (int fd = 0; fd < 3; ++fd)
        if (::fcntl(fd, F_GETFD) == -1 && ::open("/dev/null", O_RDWR) != fd) return 1;
    EventLoop loop;
    try {
        return loop.run_until_complete(main_task(loop, std::move(cmd)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "subprocess_pipe: %s\n", cli::cause(e).c_str());
        return 1;
    }
}

int main(int argc, char** argv) {
    return cli::guarded_main("subprocess_pipe", argc, argv, program);
}
