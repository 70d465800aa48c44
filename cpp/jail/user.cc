#include "jail/user.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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

// Per-namespace ceilings, counted per inside user below the host's per-user ones. Files of
// features that a kernel lacks (time namespaces before 5.6, unprivileged fanotify before 5.13,
// inotify without CONFIG_INOTIFY_USER) are skipped: what they would limit does not exist.
struct NsLimit {
  const char* path;
  const char* value;
  bool optional;
};
constexpr NsLimit kNsLimits[] = {
    {"/proc/sys/user/max_user_namespaces", "0", false},
    {"/proc/sys/user/max_mnt_namespaces", "0", false},
    {"/proc/sys/user/max_pid_namespaces", "0", false},
    {"/proc/sys/user/max_net_namespaces", "0", false},
    {"/proc/sys/user/max_ipc_namespaces", "0", false},
    {"/proc/sys/user/max_uts_namespaces", "0", false},
    {"/proc/sys/user/max_cgroup_namespaces", "0", false},
    {"/proc/sys/user/max_time_namespaces", "0", true},
    {"/proc/sys/user/max_inotify_instances", "32", true},
    {"/proc/sys/user/max_inotify_watches", "8192", true},
    {"/proc/sys/user/max_fanotify_groups", "0", true},
    {"/proc/sys/user/max_fanotify_marks", "0", true},
};

}  // namespace

int become_owner(const SpawnConfig& cfg, Creator* saved) {
  if (cfg.host_id == 0) return -EINVAL;
  if (syscall(SYS_getresuid, &saved->ruid, &saved->euid, &saved->suid) != 0) return -errno;
  if (syscall(SYS_getresgid, &saved->rgid, &saved->egid, &saved->sgid) != 0) return -errno;
  // The gid first: changing it needs CAP_SETGID, which leaving euid 0 takes from the
  // effective set (capabilities(7)); the permitted set stays, as the real uid stays 0.
  if (syscall(SYS_setresgid, -1, cfg.host_id, -1) != 0) return -errno;
  if (syscall(SYS_setresuid, -1, cfg.host_id, -1) != 0) {
    int e = errno;
    syscall(SYS_setresgid, -1, saved->egid, -1);
    return -e;
  }
  // Allowed without privilege: the target is the real id (setfsuid(2)).
  syscall(SYS_setfsuid, saved->euid);
  syscall(SYS_setfsgid, saved->egid);
  return 0;
}

int restore_creator(const Creator& saved) {
  // Back to euid 0 copies the permitted set into the effective set again.
  if (syscall(SYS_setresuid, -1, saved.euid, -1) != 0) return -errno;
  if (syscall(SYS_setresgid, -1, saved.egid, -1) != 0) return -errno;
  return 0;
}

int limit_ns() {
  for (const NsLimit& l : kNsLimits) {
    int fd = open(l.path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT && l.optional) continue;
      return -errno;
    }
    size_t len = strlen(l.value);
    ssize_t n = write(fd, l.value, len);
    int err = n == static_cast<ssize_t>(len) ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    if (err < 0) return err;
  }
  return 0;
}

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
