#include "jail/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "jail/cgroup.h"
#include "jail/contain.h"
#include "jail/rlimit.h"
#include "jail/user.h"

namespace warden::jail {

namespace {

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

constexpr uint64_t kNamespaces = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
                                 CLONE_NEWIPC | CLONE_NEWUTS;

uint64_t micros(const struct timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1000000u + static_cast<uint64_t>(tv.tv_usec);
}

[[noreturn]] void exec_command(const SpawnConfig& cfg, int report_fd) {
  int err = ENOENT;
  for (const auto& path : cfg.exec_candidates) {
    execve(path.c_str(), cfg.argv_ptrs.data(), cfg.env_ptrs.data());
    // Keep looking past a missing file; remember a permission error, as execvp(3) does.
    if (errno == EACCES) err = EACCES;
    else if (errno != ENOENT && errno != ENOTDIR) {
      err = errno;
      break;
    }
  }
  report(report_fd, Step::kExec, err);
  _exit(127);
}

// The sandbox's pid 1: forks the command, reaps everything, and reports how the command
// ended. Signals from inside the namespace cannot kill it (pid_namespaces(7)); when it exits,
// the kernel kills every process left in the namespace.
[[noreturn]] void run_init(const SpawnConfig& cfg, const ChildFds& fds) {
  pid_t cmd = static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (cmd < 0) {
    report(fds.report, Step::kFork, errno);
    _exit(127);
  }
  if (cmd == 0) {
    close(fds.status);
    exec_command(cfg, fds.report);
  }
  close(fds.report);
  close(0);
  close(1);
  close(2);

  FinalStatus st{};
  for (;;) {
    int ws = 0;
    pid_t got = static_cast<pid_t>(wait4(-1, &ws, __WALL, nullptr));
    if (got == cmd) {
      st.wait_status = ws;
      break;
    }
    if (got < 0 && errno != EINTR) break;
  }
  struct statfs sfs;
  if (statfs("/tmp", &sfs) == 0) {
    st.have_disk = 1;
    st.disk_free_bytes = static_cast<uint64_t>(sfs.f_bfree) * sfs.f_bsize;
    st.disk_total_bytes = static_cast<uint64_t>(sfs.f_blocks) * sfs.f_bsize;
  }
  struct rusage ru;
  if (getrusage(RUSAGE_CHILDREN, &ru) == 0) {
    st.cpu_user_us = micros(ru.ru_utime);
    st.cpu_sys_us = micros(ru.ru_stime);
    st.max_rss_kb = static_cast<uint64_t>(ru.ru_maxrss);
  }
  ssize_t n;
  do {
    n = write(fds.status, &st, sizeof st);
  } while (n < 0 && errno == EINTR);
  _exit(0);
}

void close_fd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

int fail(Step step, int err, SpawnError* error) {
  error->step = step;
  error->err = err;
  return -1;
}

// Reads the child's report. Returns 1 with `r` filled, 0 on end of file, -errno on error.
int read_report(int fd, Report* r) {
  size_t got = 0;
  while (got < sizeof *r) {
    ssize_t n = read(fd, reinterpret_cast<char*>(r) + got, sizeof *r - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return got == 0 ? 0 : -EPROTO;
    got += static_cast<size_t>(n);
  }
  return 1;
}

}  // namespace

int spawn(const SpawnConfig& cfg, Child* child, SpawnError* error, bool* in_child) {
  *in_child = false;
  int go[2] = {-1, -1}, rep[2] = {-1, -1}, st[2] = {-1, -1};
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0 ||
      (!cfg.fork_mode && pipe2(st, O_CLOEXEC) != 0)) {
    int e = errno;
    for (int* p : {go, rep, st}) {
      close_fd(&p[0]);
      close_fd(&p[1]);
    }
    return fail(Step::kPipe, e, error);
  }

  int pidfd = -1;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = kNamespaces | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  if (cfg.cgroup_fd >= 0) {
    // The child starts life inside its cgroup: it never runs a single instruction outside
    // the sandbox's limits (clone(2), CLONE_INTO_CGROUP).
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cfg.cgroup_fd);
  }
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    ChildFds fds{go[0], rep[1], st[1]};
    close(go[1]);
    close(rep[0]);
    if (st[0] >= 0) close(st[0]);
    Step step = Step::kNone;
    int rc = contain(cfg, &fds, &step);
    if (rc < 0) {
      report(fds.report, step, -rc);
      _exit(127);
    }
    if (cfg.fork_mode) {
      report(fds.report, Step::kDone, 0);
      close(fds.report);
      *in_child = true;
      child->pid = 0;
      return 0;
    }
    run_init(cfg, fds);
  }
  int clone_errno = errno;
  close_fd(&go[0]);
  close_fd(&rep[1]);
  close_fd(&st[1]);
  if (pid < 0) {
    close_fd(&go[1]);
    close_fd(&rep[0]);
    close_fd(&st[0]);
    return fail(Step::kClone, clone_errno, error);
  }

  auto abort_child = [&](Step step, int err) {
    close_fd(&go[1]);
    close_fd(&rep[0]);
    close_fd(&st[0]);
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    waitpid(static_cast<pid_t>(pid), nullptr, __WALL);
    close(pidfd);
    return fail(step, err, error);
  };

  int rc = user::init_ns_from_parent(static_cast<pid_t>(pid), cfg);
  if (rc < 0) return abort_child(Step::kUserMap, -rc);
  rc = cgroup::place_from_parent(static_cast<pid_t>(pid), cfg);
  if (rc < 0) return abort_child(Step::kCgroupPlace, -rc);
  rc = rlimit::set_from_parent(static_cast<pid_t>(pid), cfg);
  if (rc < 0) return abort_child(Step::kRlimit, -rc);

  char c = 1;
  if (write(go[1], &c, 1) != 1) return abort_child(Step::kHandshake, errno ? errno : EPIPE);
  close_fd(&go[1]);

  Report r{};
  rc = read_report(rep[0], &r);
  close_fd(&rep[0]);
  if (rc < 0) return abort_child(Step::kHandshake, -rc);
  bool ok = cfg.fork_mode ? (rc == 1 && r.step == static_cast<int32_t>(Step::kDone))
                          : rc == 0;
  if (!ok) {
    if (rc == 0) return abort_child(Step::kHandshake, EPIPE);
    return abort_child(static_cast<Step>(r.step), r.err);
  }
  child->pid = static_cast<pid_t>(pid);
  child->pidfd = pidfd;
  child->status_fd = st[0];
  return 0;
}

}  // namespace warden::jail
