#include "jail/rlimit.h"

#include <sys/resource.h>

#include <cerrno>

namespace warden::jail::rlimit {

namespace {

int set(int resource, rlim_t soft, rlim_t hard) {
  struct rlimit lim{soft, hard};
  return setrlimit(static_cast<__rlimit_resource>(resource), &lim) == 0 ? 0 : -errno;
}

}  // namespace

int limit_self(const SpawnConfig& cfg) {
  int rc = set(RLIMIT_CORE, 0, 0);
  if (rc == 0) rc = set(RLIMIT_SIGPENDING, cfg.sigpending, cfg.sigpending);
  if (rc == 0) rc = set(RLIMIT_MSGQUEUE, cfg.msgqueue_bytes, cfg.msgqueue_bytes);
  if (rc == 0 && cfg.file_size_bytes) {
    rc = set(RLIMIT_FSIZE, cfg.file_size_bytes, cfg.file_size_bytes);
  }
  if (rc == 0 && cfg.cpu_time_s) {
    // SIGXCPU at the soft limit, SIGKILL one second later at the hard limit (getrlimit(2)).
    rc = set(RLIMIT_CPU, cfg.cpu_time_s, cfg.cpu_time_s + 1);
  }
  if (rc == 0) rc = set(RLIMIT_NOFILE, cfg.open_files, cfg.open_files);
  return rc;
}

}  // namespace warden::jail::rlimit
