// SPDX-License-Identifier: Apache-2.0
// subprocess_exec/subprocess_shell: posix_spawn with the child's standard streams redirected,
// pipe transports (src/pipe_transport.hpp) for the pipes, and the exit reaped exactly once through
// a pidfd polled on the ring (connect_read_pipe/connect_write_pipe: src/loop_pipes.cpp).
#include "src/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cassert>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include "src/op_awaiter.hpp"
#include "src/pipe_transport.hpp"
#include "src/socket_util.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char** environ;

namespace aioring::detail {

namespace {

// Renumbers `g` to 3 or above (close-on-exec), so that the child's dup2 onto 0-2 can neither
// overwrite it before it is used nor leave its close-on-exec flag set (dup2 onto itself).
void lift_above_stdio(FdGuard& g) {
    if (g.fd > 2) return;
    int moved = ::fcntl(g.fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) throw_errno(errno, "fcntl(F_DUPFD_CLOEXEC)");
    ::close(g.fd);
    g.fd = moved;
}

struct Spawn {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    Spawn() {
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_init(&actions);
    }
    ~Spawn() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    Spawn(const Spawn&) = delete;
    Spawn& operator=(const Spawn&) = delete;
};

void check(int rc, const char* what) {
    if (rc != 0) throw_errno(rc, what);
}

// Starts the child; `parent[i]` receives our end of stream i when it is a pipe.
pid_t spawn_child(const std::vector<std::string>& args, const SubprocessOptions& o,
                  FdGuard (&parent)[3]) {
    if (args.empty() || args[0].empty()) throw std::invalid_argument("subprocess: empty command");
    const int streams[3] = {o.stdin, o.stdout, o.stderr};
    for (int i = 0; i < 3; ++i) {
        const int v = streams[i];
        if (v < subprocess::INHERIT || (v == subprocess::STDOUT && i != 2))
            throw std::invalid_argument(
                "subprocess: stdin, stdout and stderr take PIPE, DEVNULL, INHERIT, an fd, or "
                "(stderr only) STDOUT");
    }

    Spawn sp;
    std::vector<std::unique_ptr<FdGuard>> child_ends;  // closed once the child has them
    for (int i = 0; i < 3; ++i) {
        const int v = streams[i];
        int source = -1;
        if (v == subprocess::PIPE) {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
            auto r = std::make_unique<FdGuard>(p[0]);
            auto w = std::make_unique<FdGuard>(p[1]);
            lift_above_stdio(*r);
            lift_above_stdio(*w);
            auto& ours = i == 0 ? w : r;
            auto& theirs = i == 0 ? r : w;
            parent[i].fd = ours->release();
            source = theirs->fd;
            child_ends.push_back(std::move(theirs));
        } else if (v == subprocess::DEVNULL) {
            check(posix_spawn_file_actions_addopen(&sp.actions, i, "/dev/null",
                                                   i == 0 ? O_RDONLY : O_WRONLY, 0),
                  "posix_spawn_file_actions_addopen");
        } else if (v == subprocess::STDOUT) {
            source = 1;  // the child's stdout, already in place: stdout's action came first
        } else if (v >= 0 && v != i) {
            auto copy = std::make_unique<FdGuard>(::fcntl(v, F_DUPFD_CLOEXEC, 3));
            if (copy->fd < 0)
                throw_errno(errno, "subprocess: bad file descriptor for a std stream");
            source = copy->fd;
            child_ends.push_back(std::move(copy));
        }
        if (source >= 0)
            check(posix_spawn_file_actions_adddup2(&sp.actions, source, i),
                  "posix_spawn_file_actions_adddup2");
    }
    if (o.cwd)
        check(posix_spawn_file_actions_addchdir_np(&sp.actions, o.cwd->c_str()),
              "posix_spawn_file_actions_addchdir_np");
    if (o.close_fds)
        check(posix_spawn_file_actions_addclosefrom_np(&sp.actions, 3),
              "posix_spawn_file_actions_addclosefrom_np");

    // The loop's thread may block signals it reads from a signalfd, and we ignore SIGPIPE: the
    // child starts with an empty mask and SIGPIPE/SIGXFSZ at their defaults.
    sigset_t mask, defaults;
    sigemptyset(&mask);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGXFSZ);
    check(posix_spawnattr_setsigmask(&sp.attr, &mask), "posix_spawnattr_setsigmask");
    check(posix_spawnattr_setsigdefault(&sp.attr, &defaults), "posix_spawnattr_setsigdefault");
    check(posix_spawnattr_setflags(&sp.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
          "posix_spawnattr_setflags");

    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    std::vector<char*> envp;
    char** env = environ;
    if (o.env) {
        for (const auto& [k, v] : *o.env) env_strings.push_back(k + "=" + v);
        for (auto& s : env_strings) envp.push_back(s.data());
        envp.push_back(nullptr);
        env = envp.data();
    }
    // glibc's posix_spawn runs the child with CLONE_VM|CLONE_VFORK and reports an exec
    // failure (and reaps that child) itself: no zombie is left behind.
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, argv[0], &sp.actions, &sp.attr, argv.data(), env);
    if (rc != 0) throw_errno(rc, "cannot run '" + args[0] + "'");  // `parent` closes ours
    return pid;
}

}  // namespace

void ignore_sigpipe() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction old {};
        if (::sigaction(SIGPIPE, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
            old.sa_handler == SIG_DFL)
            ::signal(SIGPIPE, SIG_IGN);
    });
}

// ---- the pipes' protocol -------------------------------------------------------------------

class Subprocess::PipeProtocol final : public Protocol {
public:
    PipeProtocol(Subprocess& sub, int fd) : sub_(sub), fd_(fd) {}
    void data_received(std::string_view data) override { sub_.on_pipe_data(fd_, data); }
    void connection_lost(std::error_code ec) override { sub_.on_pipe_lost(fd_, ec); }
    void pause_writing() override { sub_.on_pause_writing(); }
    void resume_writing() override { sub_.on_resume_writing(); }

private:
    Subprocess& sub_;  // outlives the pipes: connection_lost waits for every pipe's
    int fd_;
};

// ---- the subprocess transport ----------------------------------------------------------------

Subprocess::Subprocess(LoopCore& core, std::unique_ptr<BaseProtocol> protocol)
    : TransportBase(core, *this, std::move(protocol)) {
    if (!protocol_) throw std::invalid_argument("protocol factory returned no protocol");
    if (protocol_->kind() != BaseProtocol::Kind::subprocess)
        throw std::invalid_argument("a subprocess transport needs a SubprocessProtocol");
}

Subprocess::~Subprocess() {
    if (pidfd_ >= 0) ::close(pidfd_);
}

void Subprocess::start(const std::vector<std::string>& args, const SubprocessOptions& options,
                       Callback on_made) {
    if (!std::isfinite(options.kill_grace) || options.kill_grace < 0)
        throw std::invalid_argument(
            "subprocess: kill_grace must be a finite number of seconds >= 0");
    kill_grace_ = options.kill_grace;
    ignore_sigpipe();
    FdGuard ours[3] = {FdGuard(-1), FdGuard(-1), FdGuard(-1)};
    pid_ = spawn_child(args, options, ours);
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) {
        const int err = errno;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        throw_errno(err, "pidfd_open");
    }
    for (int i = 0; i < 3; ++i) {
        if (ours[i].fd < 0) continue;
        auto protocol = std::make_unique<PipeProtocol>(*this, i);
        const int fd = ours[i].release();
        if (i == 0)
            pipes_[i] = std::make_shared<WritePipeTransport>(core_, fd, std::move(protocol));
        else
            pipes_[i] = std::make_shared<ReadPipeTransport>(core_, fd, std::move(protocol));
        pipes_[i]->start();
        pipe_open_[i] = true;
    }
    adopt(shared_from_this());
    // The pipes' own connection_made were posted first and arm their reads; nothing reaches the
    // protocol before this runs.
    core_.post([this, on_made = std::move(on_made)]() mutable {
        made_ = true;
        arm_exit_watch();
        run_callback("protocol connection_made() failed", [&] { proto()->connection_made(*this); });
        if (on_made) on_made();
    });
}

void Subprocess::arm_exit_watch() {
    io_uring_sqe* s = core_.ring.sqe();
    io_uring_prep_poll_add(s, pidfd_, POLLIN);
    io_uring_sqe_set_data(s, static_cast<uring::Op*>(this));
    watch_armed_ = true;
}

void Subprocess::loop_closed() {
    watch_armed_ = false;
    closing_ = lost_scheduled_ = lost_done_ = detached_ = true;
    if (pidfd_ >= 0) {
        siginfo_t si{};
        ::syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
        if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &si, WEXITED) == 0)
            returncode_ = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
        ::close(pidfd_);
        pidfd_ = -1;
    }
}

void Subprocess::complete(int res, unsigned) {
    watch_armed_ = false;
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        // The watch cannot work: reap synchronously is not an option, so report it.
        report(core_,
               std::make_exception_ptr(
                   std::system_error(-res, std::system_category(), "poll on a pidfd")),
               "subprocess exit watch failed", this);
    }
    siginfo_t si{};
    int rc =
        ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &si, WEXITED | WNOHANG);
    if (rc == 0 && si.si_pid == 0) {  // not exited yet (a spurious wake-up)
        if (res >= 0) arm_exit_watch();
        return;
    }
    if (rc != 0) {
        // Someone else reaped it (waitpid(-1) elsewhere): asyncio reports 255 then.
        returncode_ = 255;
    } else if (si.si_code == CLD_EXITED) {
        returncode_ = si.si_status;
    } else {
        returncode_ = -si.si_status;  // CLD_KILLED, CLD_DUMPED
    }
    ::close(pidfd_);
    pidfd_ = -1;
    kill_timer_.cancel();
    run_callback("protocol process_exited() failed", [&] { proto()->process_exited(); });
    try_finish();
}

void Subprocess::on_pipe_data(int fd, std::string_view data) {
    if (lost_scheduled_) return;
    run_callback("protocol pipe_data_received() failed",
                 [&] { proto()->pipe_data_received(fd, data); });
}

void Subprocess::on_pipe_lost(int fd, std::error_code ec) {
    pipe_open_[fd] = false;
    run_callback("protocol pipe_connection_lost() failed",
                 [&] { proto()->pipe_connection_lost(fd, ec); });
    try_finish();
}

void Subprocess::on_pause_writing() {
    run_callback("protocol pause_writing() failed", [&] { proto()->pause_writing(); });
}

void Subprocess::on_resume_writing() {
    run_callback("protocol resume_writing() failed", [&] { proto()->resume_writing(); });
}

void Subprocess::try_finish() {
    // asyncio's _try_finish: connection_lost once the child exited and every pipe is closed.
    if (lost_scheduled_ || !returncode_) return;
    for (bool open : pipe_open_)
        if (open) return;
    schedule_connection_lost({});  // then the loop lets go (nothing is armed any more)
}

void Subprocess::close() {
    if (closing_) return;
    closing_ = true;
    for (int i = 0; i < 3; ++i)
        if (pipes_[i] && pipe_open_[i]) pipes_[i]->close();
    if (returncode_) return;
    if (kill_grace_ == 0) {
        kill();
        return;
    }
    // The doc's terminate(), then SIGKILL for a child that ignores or traps SIGTERM. The timer
    // holds no reference: the transport lives until connection_lost, which needs the exit.
    terminate();
    std::weak_ptr<Subprocess> weak = weak_from_this();
    kill_timer_ = core_.loop.call_later(kill_grace_, [weak] {
        if (auto self = weak.lock()) self->kill();
    });
}

void Subprocess::send_signal(int sig) {
    if (returncode_ || pidfd_ < 0) return;
    if (::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) != 0) {
        if (errno == EINVAL) throw std::invalid_argument("send_signal: invalid signal");
        // ESRCH: it exited and its exit is on the way.
    }
}

void Subprocess::terminate() { send_signal(SIGTERM); }
void Subprocess::kill() { send_signal(SIGKILL); }

BaseTransport* Subprocess::get_pipe_transport(int fd) const {
    if (fd < 0 || fd > 2) return nullptr;
    return pipes_[fd].get();
}

std::any Subprocess::get_extra_info(std::string_view name, std::any default_value) const {
    if (name == "pid") return std::any(static_cast<int>(pid_));
    return default_value;
}

void Subprocess::set_protocol(std::unique_ptr<BaseProtocol> protocol) {
    if (!protocol) throw std::invalid_argument("set_protocol(nullptr)");
    if (protocol->kind() != BaseProtocol::Kind::subprocess)
        throw std::invalid_argument("a subprocess transport needs a SubprocessProtocol");
    // The old protocol may be the caller: it is freed once the current callback has returned.
    retire(std::exchange(protocol_, std::move(protocol)));
}

// ---- the loop's methods ----------------------------------------------------------------------

namespace {

Future<SubprocessConnection> start_subprocess(LoopCore& core, ProtocolFactory& factory,
                                              const std::vector<std::string>& args,
                                              const SubprocessOptions& options) {
    auto fut = Future<SubprocessConnection>(core.loop);
    try {
        auto protocol = factory();
        auto* p = dynamic_cast<SubprocessProtocol*>(protocol.get());
        auto sub = std::make_shared<Subprocess>(core, std::move(protocol));
        std::weak_ptr<Subprocess> weak = sub;
        sub->start(args, options, [fut, weak, p] {
            auto t = weak.lock();
            if (!fut.done())
                fut.set_result(SubprocessConnection{std::move(t), p});
            else if (t)
                t->close();  // cancelled while starting: nobody will own this child
        });
    } catch (...) {
        fut.set_exception(std::current_exception());
    }
    return fut;
}

}  // namespace
}  // namespace aioring::detail

namespace aioring {

Future<SubprocessConnection> EventLoop::subprocess_exec(ProtocolFactory factory,
                                                        std::vector<std::string> args,
                                                        SubprocessOptions options) {
    return detail::start_subprocess(*core_, factory, args, options);
}

Future<SubprocessConnection> EventLoop::subprocess_shell(ProtocolFactory factory,
                                                         std::string command,
                                                         SubprocessOptions options) {
    return detail::start_subprocess(*core_, factory, {"/bin/sh", "-c", std::move(command)},
                                    options);
}

}  // namespace aioring
