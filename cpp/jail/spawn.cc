#include "jail/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "jail/cgroup.h"
#include "jail/contain.h"
#include "jail/idmap.h"
#include "jail/net.h"
#include "jail/user.h"

namespace warden::jail {

namespace {

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

constexpr uint64_t kNamespaces = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
                                 CLONE_NEWIPC | CLONE_NEWUTS;

// clone3 with a stack of the caller's choosing: the child starts on that stack, so it cannot
// return into the C code that made the call; it calls fn(arg) and exits with its result.
// (glibc has no public clone3 wrapper; this is the same few instructions as its internal one.)
// Returns the child's pid in the parent, or -errno.
__attribute__((noinline)) long clone3_on_stack(struct clone_args* args, int (*fn)(void*),
                                               void* arg) {
  register void* r12 asm("r12") = arg;
  register int (*r13)(void*) asm("r13") = fn;
  long ret;
  asm volatile(
      "syscall\n\t"
      "testq %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xorl %%ebp, %%ebp\n\t"
      "movq %%r12, %%rdi\n\t"
      "callq *%%r13\n\t"
      "movl %%eax, %%edi\n\t"
      "movl $60, %%eax\n\t"  // SYS_exit
      "syscall\n\t"
      "hlt\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "0"(static_cast<long>(SYS_clone3)), "D"(args), "S"(sizeof(*args)), "r"(r12), "r"(r13)
      : "rcx", "r11", "memory");
  return ret;
}

struct ExecChild {
  const SpawnConfig* cfg;
  ChildFds fds;
};

// The set-up child of exec mode. It shares the parent's memory (CLONE_VM) until it execs
// warden-init: it only reads the config and writes its own stack, and the parent keeps both
// alive until the handshake ends.
int exec_child_main(void* p) {
  auto* c = static_cast<ExecChild*>(p);
  Step step = Step::kNone;
  int rc = contain(*c->cfg, &c->fds, &step);
  if (rc < 0) {
    report(c->fds.report, step, -rc);
    return 127;
  }
  // The init inherits the pipes; it closes them from its command itself.
  fcntl(c->fds.report, F_SETFD, 0);
  fcntl(c->fds.status, F_SETFD, 0);
  if (c->fds.request >= 0) fcntl(c->fds.request, F_SETFD, 0);
  // The init needs no environment: the command's comes with its request.
  char* no_env[] = {nullptr};
  syscall(SYS_execveat, c->fds.init, "", c->cfg->init_argv_ptrs.data(), no_env, AT_EMPTY_PATH);
  report(c->fds.report, Step::kExec, errno);
  return 127;
}

// Writes `v` in decimal into `buf` (at least 21 bytes): the child may not allocate.
void format_pid(pid_t v, char* buf) {
  char rev[24];
  int n = 0;
  unsigned long u = v < 0 ? 0 : static_cast<unsigned long>(v);
  do {
    rev[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  for (int i = 0; i < n; ++i) buf[i] = rev[n - 1 - i];
  buf[n] = '\0';
}

// Fork mode, in the contained child (pid 1 of the new pid namespace): forks the worker, which
// returns to the caller, and execs warden-init in its place, which reaps every process of the
// namespace and reports how the worker ended (init.cc). So pid 1 is never the worker: an
// orphan is reaped, and the worker's own signals end it as they end any process (a pid
// namespace's init ignores every signal it has no handler for). Returns only in the worker.
void fork_worker(const SpawnConfig& cfg, const ChildFds& fds) {
  pid_t worker = fork();
  if (worker == 0) {
    // The init's pipes are not the worker's: with them it could forge the set-up's outcome
    // or its own end.
    close(fds.report);
    close(fds.status);
    close(fds.init);
    return;
  }
  if (worker < 0) {
    report(fds.report, Step::kFork, errno);
    _exit(127);
  }
  // The passed descriptors (the worker's channel) are the worker's alone: if the init held
  // the channel open, the host would not see it close when the worker dies.
  for (size_t i = 0; i < cfg.pass_fds.size(); ++i) close(3 + static_cast<int>(i));
  fcntl(fds.report, F_SETFD, 0);
  fcntl(fds.status, F_SETFD, 0);
  char pid_arg[24];
  format_pid(worker, pid_arg);
  char* argv[8];
  size_t n = 0;
  for (char* a : cfg.init_argv_ptrs) {
    if (a == nullptr || n + 2 >= sizeof argv / sizeof argv[0]) break;
    argv[n++] = a;
  }
  argv[n++] = pid_arg;
  argv[n] = nullptr;
  char* no_env[] = {nullptr};
  syscall(SYS_execveat, fds.init, "", argv, no_env, AT_EMPTY_PATH);
  // Without its init the namespace dies with this process, the worker with it.
  report(fds.report, Step::kExec, errno);
  _exit(127);
}

// A private stack for the set-up child, with a guard page below it.
struct ChildStack {
  static constexpr size_t kSize = 256 * 1024;
  void* base = MAP_FAILED;
  ChildStack() {
    base = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                -1, 0);
    if (base != MAP_FAILED) mprotect(base, 4096, PROT_NONE);
  }
  ~ChildStack() {
    if (base != MAP_FAILED) munmap(base, kSize);
  }
};

// Blocks every signal in the calling thread for the length of the handshake: the CLONE_VM
// child shares this thread's errno, and an interrupted read here would read the child's.
struct BlockSignals {
  sigset_t old;
  BlockSignals() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
  }
  ~BlockSignals() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
};

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
  int go[2] = {-1, -1}, rep[2] = {-1, -1}, st[2] = {-1, -1}, rq[2] = {-1, -1};
  bool waits = !cfg.fork_mode;
  // The request travels on a socket, not a pipe, so that a write to an init that has gone
  // fails with EPIPE whatever the process does with SIGPIPE (MSG_NOSIGNAL).
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0 ||
      pipe2(st, O_CLOEXEC) != 0 ||
      (waits && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rq) != 0)) {
    int e = errno;
    for (int* p : {go, rep, st, rq}) {
      close_fd(&p[0]);
      close_fd(&p[1]);
    }
    return fail(Step::kPipe, e, error);
  }

  if (cfg.init_fd < 0) {
    for (int* p : {go, rep, st, rq}) {
      close_fd(&p[0]);
      close_fd(&p[1]);
    }
    return fail(Step::kExec, EBADF, error);
  }
  BlockSignals blocked;
  ChildStack stack;
  if (stack.base == MAP_FAILED) {
    int e = errno;
    for (int* p : {go, rep, st, rq}) {
      close_fd(&p[0]);
      close_fd(&p[1]);
    }
    return fail(Step::kClone, e, error);
  }
  // As the host's root, before the thread takes the sandbox's identity: only the host's root
  // may idmap a mount of the host's file systems (idmap.h).
  idmap::Areas areas;
  int area_rc = idmap::prepare(cfg, &areas);
  if (area_rc < 0) {
    for (int* p : {go, rep, st, rq}) {
      close_fd(&p[0]);
      close_fd(&p[1]);
    }
    return fail(Step::kIdmap, -area_rc, error);
  }
  ExecChild exec_child{&cfg, {go[0], rep[1], st[1], cfg.init_fd, rq[0]}};
  memcpy(exec_child.fds.areas, areas.fds, sizeof areas.fds);

  int pidfd = -1;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = kNamespaces | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  const bool sibling = cfg.fork_mode && cfg.sibling;
  if (sibling) {
    // The caller's parent reaps the sandbox. The child then gets the caller's own exit signal,
    // and clone3 wants exit_signal zero (clone(2), CLONE_PARENT).
    args.flags |= CLONE_PARENT;
    args.exit_signal = 0;
  }
  if (cfg.cgroup_fd >= 0) {
    // The child starts life inside its cgroup: it never runs a single instruction outside
    // the sandbox's limits (clone(2), CLONE_INTO_CGROUP).
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cfg.cgroup_fd);
  }
  if (cfg.netns_fd >= 0) {
    // The child inherits the calling thread's network namespace: enter the prepared one for
    // the length of the clone only.
    args.flags &= ~static_cast<uint64_t>(CLONE_NEWNET);
    if (net::enter_ns(cfg.netns_fd) < 0) {
      int e = errno;
      for (int* p : {go, rep, st, rq}) {
        close_fd(&p[0]);
        close_fd(&p[1]);
      }
      return fail(Step::kLoopback, e, error);
    }
  }
  // From here to the clone the thread acts as the sandbox's host id (user.h says why).
  user::Creator creator;
  int owner_rc = user::become_owner(cfg, &creator);
  if (owner_rc < 0) {
    if (cfg.netns_fd >= 0 && net::leave_ns() < 0) abort();  // see net::make_ns
    for (int* p : {go, rep, st, rq}) {
      close_fd(&p[0]);
      close_fd(&p[1]);
    }
    return fail(Step::kNsOwner, -owner_rc, error);
  }
  long pid;
  if (!cfg.fork_mode) {
    // Exec mode: no copy of the host's page tables (and so none of its memory) is made; the
    // child shares them until it execs warden-init.
    args.flags |= CLONE_VM;
    args.stack = reinterpret_cast<uint64_t>(stack.base);
    args.stack_size = ChildStack::kSize;
    pid = clone3_on_stack(&args, exec_child_main, &exec_child);
    if (pid < 0) {
      errno = static_cast<int>(-pid);
      pid = -1;
    }
  } else {
    pid = syscall(SYS_clone3, &args, sizeof args);
  }
  int clone_errno = errno;
  // A thread left without its host identity would fail every later step, and silently
  // lack privileges the caller counts on: there is no safe way to go on.
  if (pid != 0 && user::restore_creator(creator) < 0) abort();
  if (pid == 0) {
    // Fork mode only: a private copy of the caller, whose worker returns to it once contained.
    ChildFds fds{go[0], rep[1], st[1], cfg.init_fd, -1};
    memcpy(fds.areas, areas.fds, sizeof areas.fds);
    // The worker returns through this frame: its numbers are the child's to close (contain),
    // never the destructor's, which would close whatever holds them by then.
    for (int& fd : areas.fds) fd = -1;
    close(go[1]);
    close(rep[0]);
    close(st[0]);
    Step step = Step::kNone;
    int rc = contain(cfg, &fds, &step);
    if (rc < 0) {
      report(fds.report, step, -rc);
      _exit(127);
    }
    fork_worker(cfg, fds);
    *in_child = true;
    child->pid = 0;
    return 0;
  }
  if (cfg.netns_fd >= 0 && net::leave_ns() < 0) abort();  // see net::make_ns
  // The child has its own copies (or there is no child).
  areas.close_all();
  close_fd(&go[0]);
  close_fd(&rep[1]);
  close_fd(&st[1]);
  close_fd(&rq[0]);
  if (pid < 0) {
    close_fd(&go[1]);
    close_fd(&rep[0]);
    close_fd(&st[0]);
    close_fd(&rq[1]);
    return fail(Step::kClone, clone_errno, error);
  }

  int* held_ns = nullptr;
  auto abort_child = [&](Step step, int err) {
    if (held_ns != nullptr) close_fd(held_ns);
    close_fd(&go[1]);
    close_fd(&rep[0]);
    close_fd(&st[0]);
    close_fd(&rq[1]);
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    // A sibling is not ours to reap: the caller's parent does.
    if (!sibling) waitpid(static_cast<pid_t>(pid), nullptr, __WALL);
    close(pidfd);
    return fail(step, err, error);
  };

  int rc = user::init_ns_from_parent(static_cast<pid_t>(pid), cfg);
  if (rc < 0) return abort_child(Step::kUserMap, -rc);
  int mount_ns = -1;
  if (cfg.hold_mount_ns) {
    // Taken now, while the child waits for us: later it may already be gone.
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/mnt", static_cast<int>(pid));
    mount_ns = open(path, O_RDONLY | O_CLOEXEC);
    if (mount_ns < 0) return abort_child(Step::kHandshake, errno);
    held_ns = &mount_ns;
  }
  rc = cgroup::place_from_parent(static_cast<pid_t>(pid), cfg);
  if (rc < 0) return abort_child(Step::kCgroupPlace, -rc);

  char c = 1;
  if (write(go[1], &c, 1) != 1) return abort_child(Step::kHandshake, errno ? errno : EPIPE);
  close_fd(&go[1]);

  // The init reports Step::kDone once it waits for its request (exec mode) or reaps for the
  // worker (fork mode).
  Report r{};
  rc = read_report(rep[0], &r);
  if (rc < 0) return abort_child(Step::kHandshake, -rc);
  if (rc == 0) return abort_child(Step::kHandshake, EPIPE);
  if (r.step != static_cast<int32_t>(Step::kDone)) {
    return abort_child(static_cast<Step>(r.step), r.err);
  }
  if (cfg.fork_mode) close_fd(&rep[0]);
  child->pid = static_cast<pid_t>(pid);
  child->pidfd = pidfd;
  child->status_fd = st[0];
  child->mount_ns_fd = mount_ns;
  child->request_fd = rq[1];
  child->report_fd = rep[0];
  return 0;
}

void discard(Child* child) {
  if (child->pidfd >= 0) {
    syscall(SYS_pidfd_send_signal, child->pidfd, SIGKILL, nullptr, 0);
    waitpid(child->pid, nullptr, __WALL);
  }
  for (int* fd : {&child->pidfd, &child->status_fd, &child->mount_ns_fd, &child->request_fd,
                  &child->report_fd}) {
    close_fd(fd);
  }
}

int start(Child* child, const std::string& request, SpawnError* error) {
  auto refuse = [&](Step step, int err) {
    discard(child);
    return fail(step, err, error);
  };
  if (child->request_fd < 0 || child->report_fd < 0) return refuse(Step::kHandshake, EBADF);
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = send(child->request_fd, request.data() + off, request.size() - off,
                     MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    // The init may have refused a malformed request and exited: its report says why.
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close_fd(&child->request_fd);
  Report r{};
  int rc = read_report(child->report_fd, &r);
  close_fd(&child->report_fd);
  if (rc < 0) return refuse(Step::kHandshake, -rc);
  if (rc == 1) return refuse(static_cast<Step>(r.step), r.err);
  if (off < request.size()) return refuse(Step::kHandshake, EPIPE);
  return 0;
}

}  // namespace warden::jail
