#include "jail/cgroup.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace warden::jail::cgroup {

int place_from_parent(pid_t pid, const SpawnConfig& cfg) {
  char buf[24];
  int len = snprintf(buf, sizeof buf, "%d", static_cast<int>(pid));
  for (const auto& path : cfg.cgroup_procs) {
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, buf, static_cast<size_t>(len));
    int err = n == len ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    if (err < 0) return err;
  }
  return 0;
}

int init_ns() {
  if (unshare(CLONE_NEWCGROUP) != 0) return -errno;
  return 0;
}

}  // namespace warden::jail::cgroup
