// warden-init: pid 1 of every sandbox.
//
// Exec mode (warden.run): the set-up child execs this small static binary as its last act, so
// that nothing of the host process's memory stays inside the sandbox and the command is forked
// from a tiny process. It says it is ready (Step::kDone on the report pipe) and waits for one
// request (jail/request.h): the working directory, the PATH candidates, argv and the
// environment. So a sandbox can be made whole ahead of its command; nothing of the command
// exists before the request, and each init serves one. Then it forks the command (vfork:
// nothing to copy). A command that cannot be exec'd is the command's own outcome, not a
// failed set-up: it ends with 127 or 126 and a line on its stderr, as in a shell.
//
// Worker mode (the zygote's sandboxes): the contained child has already forked the Python
// worker (jail/spawn.cc, fork_worker) and execs this in its own place; it says it is ready.
//
// Either way it then reaps every process that the namespace hands to it, forwards the signals
// that ask a process to end to its one child (a pid namespace's init ignores, from inside,
// every signal it has no handler for), and when that child ends writes its exact wait status
// (FinalStatus) to the status pipe and exits. When it exits, the kernel kills whatever is left
// in the pid namespace (pid_namespaces(7)).
//
//   warden-init REPORT_FD STATUS_FD REQUEST_FD
//   warden-init --worker REPORT_FD STATUS_FD WORKER_PID
//
// Runs under the sandbox's seccomp filter, as the sandbox user, with no capabilities. Nothing
// here allocates after the request is read.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "jail/request.h"
#include "jail/status.h"

using warden::jail::FinalStatus;
using warden::jail::Report;
using warden::jail::Step;
namespace request = warden::jail::request;

namespace {

// A whole number in [0, limit), or -1.
int to_int(const char* s, long limit) {
  char* end = nullptr;
  long v = strtol(s, &end, 10);
  return (end && end != s && *end == '\0' && v >= 0 && v < limit) ? static_cast<int>(v) : -1;
}

int to_fd(const char* s) { return to_int(s, 1 << 20); }

void write_all(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    len -= static_cast<size_t>(n);
  }
}

[[noreturn]] void fail(int report, Step step, int err) {
  Report r{static_cast<int32_t>(step), err};
  write_all(report, &r, sizeof r);
  _exit(127);
}

bool read_all(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Reads and checks the one request of a prepared sandbox, then enters its working
// directory. Exits through fail() on anything malformed: the parent reads that as a refusal.
request::Parsed wait_for_request(int report, int fd) {
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  Report ready{static_cast<int32_t>(Step::kDone), 0};
  write_all(report, &ready, sizeof ready);
  request::Header h;
  if (!read_all(fd, &h, sizeof h)) fail(report, Step::kHandshake, EPIPE);
  if (!request::header_ok(h)) fail(report, Step::kHandshake, EPROTO);
  char* blob = static_cast<char*>(malloc(h.blob_len + 1));
  size_t slots = static_cast<size_t>(h.n_paths) + h.argc + h.envc + 3;
  char** ptrs = static_cast<char**>(malloc(slots * sizeof(char*)));
  if (blob == nullptr || ptrs == nullptr) fail(report, Step::kHandshake, ENOMEM);
  if (!read_all(fd, blob, h.blob_len)) fail(report, Step::kHandshake, EPIPE);
  close(fd);
  blob[h.blob_len] = '\0';
  request::Parsed req;
  if (!request::parse(h, blob, ptrs, &req)) fail(report, Step::kHandshake, EPROTO);
  if (chdir(req.cwd) != 0) fail(report, Step::kChdir, errno);
  return req;
}

// In the vfork child, when no candidate could be exec'd: one line on the command's stderr and
// the exit status a POSIX shell gives ("Command Search and Execution"): 127 when the command
// is not there, 126 when it is there but cannot be run. Only writes; nothing is allocated.
[[noreturn]] void exec_failed(const char* name, int err) {
  bool missing = err == ENOENT || err == ENOTDIR;
  const char* why = (missing && strchr(name, '/') == nullptr) ? "command not found"
                                                               : strerrordesc_np(err);
  if (why == nullptr) why = "cannot be executed";
  struct iovec line[] = {
      {const_cast<char*>("warden: "), 8},
      {const_cast<char*>(name), strlen(name)},
      {const_cast<char*>(": "), 2},
      {const_cast<char*>(why), strlen(why)},
      {const_cast<char*>("\n"), 1},
  };
  ssize_t ignored = writev(2, line, 5);  // nobody to tell if stderr is gone
  (void)ignored;
  _exit(missing ? 127 : 126);
}

uint64_t micros(const struct timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1000000u + static_cast<uint64_t>(tv.tv_usec);
}

// The one child whose end the init reports; signals are forwarded to it.
volatile pid_t g_child = 0;

void forward(int sig) {
  int saved = errno;
  if (g_child > 0) kill(g_child, sig);
  errno = saved;
}

// The signals that ask a process to end: sent to pid 1 (from the host, or by the sandbox's
// own code), they reach the child instead, which may handle them or die of them.
void forward_signals_to(pid_t child) {
  g_child = child;
  struct sigaction sa = {};
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaction(sig, &sa, nullptr);
}

// Reaps every process until `child` has ended, then writes its FinalStatus to `status`.
int reap_and_report(pid_t child, int status) {
  FinalStatus st{};
  for (;;) {
    int ws = 0;
    pid_t got = waitpid(-1, &ws, __WALL);
    if (got == child) {
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
  write_all(status, &st, sizeof st);
  return 0;
}

// Worker mode: the worker runs already; report ready and reap until it ends.
int serve_worker(int report, int status, pid_t worker) {
  forward_signals_to(worker);
  Report ready{static_cast<int32_t>(Step::kDone), 0};
  write_all(report, &ready, sizeof ready);
  close(report);
  // The worker has its own stdio; pid 1 needs none.
  close(0);
  close(1);
  close(2);
  return reap_and_report(worker, status);
}

}  // namespace

int main(int argc, char** argv) {
  // The command runs as the same user: without this it could open /proc/1/mem and rewrite
  // the report it is judged by (proc(5), PTRACE_MODE_ATTACH and dumpable).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (argc == 5 && strcmp(argv[1], "--worker") == 0) {
    int report = to_fd(argv[2]);
    int status = to_fd(argv[3]);
    int worker = to_int(argv[4], 1 << 22);  // PID_MAX_LIMIT
    if (report < 0 || status < 0 || worker <= 1) return 127;
    return serve_worker(report, status, worker);
  }
  if (argc != 4) return 127;
  int report = to_fd(argv[1]);
  int status = to_fd(argv[2]);
  int request_fd = to_fd(argv[3]);
  if (report < 0 || status < 0 || request_fd < 0) return 127;
  fcntl(report, F_SETFD, FD_CLOEXEC);
  fcntl(status, F_SETFD, FD_CLOEXEC);
  request::Parsed req = wait_for_request(report, request_fd);
  int n = static_cast<int>(req.n_paths);
  char** paths = req.paths;
  char** cmd = req.argv;
  char** envp = req.envp;

  pid_t child = vfork();
  if (child == 0) {
    int err = ENOENT;
    for (int i = 0; i < n; ++i) {
      execve(paths[i], cmd, envp);
      // Past a missing file keep looking; remember a permission error, as execvp(3) does.
      if (errno == EACCES) err = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR) {
        err = errno;
        break;
      }
    }
    exec_failed(cmd[0], err);
  }
  if (child < 0) {
    Report r{static_cast<int32_t>(Step::kFork), errno};
    write_all(report, &r, sizeof r);
    return 127;
  }
  forward_signals_to(child);
  close(report);
  // The parent reads the command's output until every writer is gone; pid 1 must not be one.
  close(0);
  close(1);
  close(2);
  return reap_and_report(child, status);
}
