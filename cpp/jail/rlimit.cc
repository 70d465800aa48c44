#include "jail/rlimit.h"

#include <sys/resource.h>

#include <cerrno>

namespace warden::jail::rlimit {

namespace {

int set(pid_t pid, int resource, rlim_t soft, rlim_t hard) {
  struct rlimit64 lim{soft, hard};
  if (prlimit64(pid, static_cast<__rlimit_resource>(resource), &lim, nullptr) != 0) return -errno;
  return 0;
}

}  // namespace

int set_from_parent(pid_t pid, const SpawnConfig& cfg) {
  int rc = set(pid, RLIMIT_CORE, 0, 0);
  if (rc == 0 && cfg.file_size_bytes) {
    rc = set(pid, RLIMIT_FSIZE, cfg.file_size_bytes, cfg.file_size_bytes);
  }
  if (rc == 0 && cfg.cpu_time_s) {
    // SIGXCPU at the soft limit, SIGKILL one second later at the hard limit (getrlimit(2)).
    rc = set(pid, RLIMIT_CPU, cfg.cpu_time_s, cfg.cpu_time_s + 1);
  }
  return rc;
}

int limit_open_files(const SpawnConfig& cfg) {
  // Lowering one's own limits needs no privilege (setrlimit(2)); raising it above the
  // host's hard limit would fail with EPERM, which fails the set-up closed.
  struct rlimit lim{static_cast<rlim_t>(cfg.open_files), static_cast<rlim_t>(cfg.open_files)};
  return setrlimit(RLIMIT_NOFILE, &lim) == 0 ? 0 : -errno;
}

}  // namespace warden::jail::rlimit
