#include "jail/idmap.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace warden::jail::idmap {

namespace {

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

// linux/mount.h, which clashes with glibc's <sys/mount.h>.
struct MountAttr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};
constexpr unsigned kOpenTreeClone = 1;
constexpr unsigned kOpenTreeCloexec = O_CLOEXEC;
constexpr unsigned kMoveMountFEmptyPath = 0x00000004;
constexpr uint64_t kAttrRdonly = 0x00000001;
constexpr uint64_t kAttrNosuid = 0x00000002;
constexpr uint64_t kAttrNodev = 0x00000004;
constexpr uint64_t kAttrIdmap = 0x00100000;
constexpr uint64_t kMsPrivate = 1 << 18;

constexpr size_t kHelperStack = 64 * 1024;

// The helper child: it lives in the new user namespace until the parent closes the pipe.
// One read, whatever it returns: the child shares the caller's memory, errno included, and
// ends either way.
int hold(void* arg) {
  const int* p = static_cast<const int*>(arg);
  // Its own copy of the write end would keep the read below from ever seeing the end.
  close(p[1]);
  char c;
  ssize_t n = read(p[0], &c, 1);
  return n < 0 ? 1 : 0;
}

int write_map(pid_t pid, const char* name, unsigned from, unsigned to) {
  char path[64], line[64];
  snprintf(path, sizeof path, "/proc/%d/%s", static_cast<int>(pid), name);
  int len = snprintf(line, sizeof line, "%u %u 1\n", from, to);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, line, static_cast<size_t>(len));
  int err = n == len ? 0 : (n < 0 ? -errno : -EIO);
  close(fd);
  return err;
}

int open_ns(pid_t pid, int* ns_fd) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", static_cast<int>(pid));
  *ns_fd = open(path, O_RDONLY | O_CLOEXEC);
  return *ns_fd < 0 ? -errno : 0;
}

// One area: a detached clone of `path`, idmapped through `userns` and read-only; with
// `fallback`, read-only without the mapping where the file system has no idmapped mounts.
int clone_area(const char* path, int userns, bool fallback, int* out) {
  int fd = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, path,
                                    kOpenTreeClone | kOpenTreeCloexec | AT_SYMLINK_NOFOLLOW));
  if (fd < 0) return -errno;
  MountAttr attr{kAttrRdonly | kAttrNosuid | kAttrNodev | kAttrIdmap, 0, kMsPrivate,
                 static_cast<uint64_t>(userns)};
  int rc = static_cast<int>(syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr,
                                    sizeof attr));
  if (rc != 0 && errno == EINVAL && fallback) {
    // A file system without idmapped mounts (tmpfs before Linux 6.3): the same read-only clone
    // without the mapping. The sandbox then reads the area as "other", which warden's areas
    // allow inside their 0700 directory (the clone's root is the area itself, so the sandbox
    // never needs to pass that directory).
    attr = MountAttr{kAttrRdonly | kAttrNosuid | kAttrNodev, 0, kMsPrivate, 0};
    rc = static_cast<int>(syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr));
  }
  if (rc != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  *out = fd;
  return 0;
}

}  // namespace

void Areas::close_all() {
  for (int& fd : fds) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

int make_userns(uid_t from_uid, gid_t from_gid, uint32_t to_id, int* ns_fd) {
  *ns_fd = -1;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -errno;
  void* stack = mmap(nullptr, kHelperStack, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    return -e;
  }
  // CLONE_VM: no copy of the caller's memory; the helper only reads the pipe and exits. No
  // exit signal: it is reaped here with __WALL, and a SIGCHLD handler of the caller never
  // sees it.
  pid_t pid = clone(hold, static_cast<char*>(stack) + kHelperStack, CLONE_NEWUSER | CLONE_VM, p);
  int rc = pid < 0 ? -errno : 0;
  if (rc == 0) rc = write_map(pid, "uid_map", from_uid, to_id);
  if (rc == 0) rc = write_map(pid, "gid_map", from_gid, to_id);
  if (rc == 0) rc = open_ns(pid, ns_fd);
  close(p[1]);
  if (pid > 0) {
    while (waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
    }
  }
  close(p[0]);
  munmap(stack, kHelperStack);
  return rc;
}

int prepare(const SpawnConfig& cfg, Areas* areas) {
  bool any = false;
  for (const MountOp& op : cfg.mounts) any = any || op.kind == MountKind::kBindArea;
  if (!any) return 0;
  int userns = -1;
  int rc = make_userns(geteuid(), getegid(), cfg.host_id, &userns);
  if (rc < 0) return rc;
  for (const MountOp& op : cfg.mounts) {
    if (op.kind != MountKind::kBindArea) continue;
    if (op.source_index < 0 || op.source_index >= kMaxAreas) {
      rc = -EINVAL;
      break;
    }
    rc = clone_area(op.source.c_str(), userns, cfg.area_unmapped_ok,
                    &areas->fds[op.source_index]);
    if (rc < 0) break;
  }
  // The mounts keep their idmapping; the namespace itself is needed no more.
  close(userns);
  if (rc < 0) areas->close_all();
  return rc;
}

int attach(int fd, const char* target) {
  if (fd < 0) return -EBADF;
  if (syscall(SYS_move_mount, fd, "", AT_FDCWD, target, kMoveMountFEmptyPath) != 0) return -errno;
  return 0;
}

}  // namespace warden::jail::idmap
