#include "jail/user.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

namespace warden::jail::user {

namespace {

int write_proc_file(pid_t pid, const char* name, const std::string& content) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", static_cast<int>(pid), name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, content.data(), content.size());
  int err = n == static_cast<ssize_t>(content.size()) ? 0 : (n < 0 ? -errno : -EIO);
  close(fd);
  return err;
}

}  // namespace

int init_ns_from_parent(pid_t pid, const SpawnConfig& cfg) {
  // The parent has CAP_SETUID/CAP_SETGID in the parent namespace, so it may map any ids and
  // "setgroups" can stay "allow": the child needs setgroups(0, NULL) to shed the host's
  // supplementary groups, which would otherwise travel into the sandbox (user_namespaces(7)).
  int rc = write_proc_file(pid, "uid_map", cfg.uid_map);
  if (rc < 0) return rc;
  return write_proc_file(pid, "gid_map", cfg.gid_map);
}

// Raw syscalls, not the glibc wrappers: in a process cloned from a multithreaded host, glibc
// still believes the host's threads exist and would try to change their credentials too
// (nptl's setxid broadcast), signalling thread ids that mean nothing in the child.
int become_setup_root() {
  if (syscall(SYS_setresgid, 0, 0, 0) != 0) return -errno;
  if (syscall(SYS_setresuid, 0, 0, 0) != 0) return -errno;
  return 0;
}

int become_sandbox_user(const SpawnConfig& cfg) {
  if (syscall(SYS_setgroups, 0, nullptr) != 0) return -errno;
  gid_t g = cfg.inside_id;
  uid_t u = cfg.inside_id;
  if (syscall(SYS_setresgid, g, g, g) != 0) return -errno;
  if (syscall(SYS_setresuid, u, u, u) != 0) return -errno;
  return 0;
}

}  // namespace warden::jail::user
