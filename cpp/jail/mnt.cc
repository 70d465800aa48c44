#include "jail/mnt.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "jail/idmap.h"

namespace warden::jail::mnt {

namespace {

// struct mount_attr and its flags (linux/mount.h), declared here because that header clashes
// with glibc's <sys/mount.h>.
struct MountAttr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};
constexpr uint64_t kAttrRdonly = 0x00000001;
constexpr uint64_t kAttrNosuid = 0x00000002;
constexpr uint64_t kAttrNodev = 0x00000004;
constexpr unsigned kAtRecursive = 0x8000;
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

// The host as the parent sees it.
class RealHost : public HostView {
 public:
  int stat(const std::string& path, PathKind* kind) const override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return -errno;
    *kind = kind_of(st.st_mode);
    return 0;
  }
  int lstat(const std::string& path, PathKind* kind) const override {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return -errno;
    *kind = kind_of(st.st_mode);
    return 0;
  }
  int readlink(const std::string& path, std::string* target) const override {
    char buf[256];
    ssize_t len = ::readlink(path.c_str(), buf, sizeof buf - 1);
    if (len < 0) return -errno;
    target->assign(buf, static_cast<size_t>(len));
    return 0;
  }

 private:
  static PathKind kind_of(mode_t mode) {
    if (S_ISLNK(mode)) return PathKind::kSymlink;
    if (S_ISDIR(mode)) return PathKind::kDir;
    return PathKind::kOther;
  }
};

}  // namespace

int plan_root(const RootSpec& spec, SpawnConfig* cfg, std::string* what) {
  return plan_root(spec, RealHost(), cfg, what);
}

namespace {

int create_empty_file(const char* path, unsigned mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return -errno;
  close(fd);
  return 0;
}

int write_file(const char* path, const std::string& data, unsigned mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return -errno;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return -e;
    }
    off += static_cast<size_t>(n);
  }
  // fchmod: the mode given to open() is filtered by the umask inherited from the host.
  if (fchmod(fd, mode) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  close(fd);
  return 0;
}

int set_attr(const char* path, uint64_t set, bool recursive) {
  MountAttr attr{set, 0, 0, 0};
  unsigned flags = recursive ? kAtRecursive : 0;
  if (syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof attr) == 0) return 0;
  if (errno != ENOSYS) return -errno;
  // Kernels before 5.12: a non-recursive remount keeps the locked flags of the source mount.
  unsigned long ms = MS_REMOUNT | MS_BIND;
  if (set & kAttrRdonly) ms |= MS_RDONLY;
  if (set & kAttrNosuid) ms |= MS_NOSUID;
  if (set & kAttrNodev) ms |= MS_NODEV;
  if (mount(nullptr, path, nullptr, ms, nullptr) != 0) return -errno;
  return 0;
}

// "/proc/self/fd/N" without snprintf (not async-signal-safe).
void fd_path(int fd, char* out) {
  const char prefix[] = "/proc/self/fd/";
  memcpy(out, prefix, sizeof prefix - 1);
  char digits[12];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0);
  char* p = out + sizeof prefix - 1;
  while (n > 0) *p++ = digits[--n];
  *p = '\0';
}

int apply(const MountOp& op, const int* fds, const int* areas) {
  const char* t = op.target.c_str();
  switch (op.kind) {
    case MountKind::kDir:
      if (mkdir(t, op.mode) != 0) return errno == EEXIST ? 0 : -errno;
      // The mode given to mkdir() is filtered by the umask inherited from the host.
      if (chmod(t, op.mode) != 0) return -errno;
      return 0;
    case MountKind::kFile:
      return write_file(t, op.data, op.mode);
    case MountKind::kSymlink:
      if (symlink(op.data.c_str(), t) != 0) return -errno;
      return 0;
    case MountKind::kBindRO:
    case MountKind::kBindDev: {
      int rc = op.is_dir ? (mkdir(t, 0755) == 0 || errno == EEXIST ? 0 : -errno)
                         : create_empty_file(t, 0644);
      if (rc < 0 && rc != -EEXIST) return rc;
      int src = op.source_index >= 0 ? fds[op.source_index] : -1;
      if (src < 0) {
        if (op.optional) return 0;
        return -EBADF;
      }
      char via[40];
      fd_path(src, via);
      if (mount(via, t, nullptr, MS_BIND | MS_REC, nullptr) != 0) return -errno;
      uint64_t attr = kAttrNosuid;
      if (op.kind == MountKind::kBindRO) attr |= kAttrRdonly | kAttrNodev;
      return set_attr(t, attr, true);
    }
    case MountKind::kBindArea: {
      if (mkdir(t, 0755) != 0 && errno != EEXIST) return -errno;
      int src = op.source_index >= 0 && op.source_index < kMaxAreas ? areas[op.source_index] : -1;
      // Its attributes (read-only, idmapped, private) were set by the parent on the detached
      // mount, the only time the kernel allows an idmapping.
      return idmap::attach(src, t);
    }
    case MountKind::kTmpfs:
      if (mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NOEXEC, op.data.c_str()) != 0) return -errno;
      return 0;
    case MountKind::kProc:
      if (mount("proc", t, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) return -errno;
      return 0;
    case MountKind::kDevpts:
      // devpts may be mounted by the owner of a user namespace (FS_USERNS_MOUNT, Linux 4.7).
      if (mount("devpts", t, "devpts", MS_NOSUID | MS_NOEXEC, op.data.c_str()) != 0)
        return -errno;
      return 0;
    case MountKind::kMask: {
      struct stat st;
      if (lstat(t, &st) != 0) return op.optional && errno == ENOENT ? 0 : -errno;
      if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", t, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=0,nr_inodes=1,mode=0500") != 0) {
          return -errno;
        }
        return 0;
      }
      if (mount("/dev/null", t, nullptr, MS_BIND, nullptr) != 0) return -errno;
      // Without nodev: this bind is /dev/null itself, which then reads as empty rather than
      // failing with EACCES, as a program that reads /proc/cmdline expects.
      return set_attr(t, kAttrRdonly | kAttrNosuid, false);
    }
    case MountKind::kReadOnly: {
      struct stat st;
      if (lstat(t, &st) != 0) return op.optional && errno == ENOENT ? 0 : -errno;
      if (mount(t, t, nullptr, MS_BIND | MS_REC, nullptr) != 0) return -errno;
      return set_attr(t, kAttrRdonly | kAttrNosuid | kAttrNodev, true);
    }
    case MountKind::kRemountRO:
      return set_attr(t, kAttrRdonly | kAttrNosuid | kAttrNodev, false);
  }
  return -EINVAL;
}

Step step_of(MountKind k) {
  switch (k) {
    case MountKind::kBindRO: return Step::kBindMount;
    case MountKind::kBindDev:
    case MountKind::kDevpts:
    case MountKind::kTmpfs: return Step::kDev;
    case MountKind::kProc:
    case MountKind::kMask:
    case MountKind::kReadOnly: return Step::kProc;
    case MountKind::kBindArea: return Step::kAreaMount;
    default: return Step::kMountLayout;
  }
}

}  // namespace

int open_sources(const SpawnConfig& cfg, int* fds, Step* step) {
  *step = Step::kBindMount;
  for (int i = 0; i < kMaxBinds; ++i) fds[i] = -1;
  for (const MountOp& op : cfg.mounts) {
    // An area's slot is one of the parent's detached mounts, not a path to open here.
    if (op.source_index < 0 || op.kind == MountKind::kBindArea) continue;
    int fd = open(op.source.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0 && !(op.optional && errno == ENOENT)) return -errno;
    fds[op.source_index] = fd;
  }
  return 0;
}

namespace {

void close_all(int* fds, int n) {
  for (int i = 0; i < n; ++i) {
    if (fds[i] >= 0) close(fds[i]);
    fds[i] = -1;
  }
}

// "a/b" into out, without snprintf (not async-signal-safe). Returns false when it does not fit.
bool join(const char* a, const char* b, char* out, size_t size) {
  size_t la = strlen(a), lb = strlen(b);
  if (la + 1 + lb + 1 > size) return false;
  memcpy(out, a, la);
  out[la] = '/';
  memcpy(out + la + 1, b, lb + 1);
  return true;
}

// Binds the writable directories whose `late` flag is `late`.
int bind_writable(const SpawnConfig& cfg, bool late) {
  char path[512];
  for (const WritableDir& w : cfg.writable) {
    if (w.late != late) continue;
    if (!join(cfg.writable_staging.c_str(), w.name.c_str(), path, sizeof path)) {
      return -ENAMETOOLONG;
    }
    if (mount(path, w.target.c_str(), nullptr, MS_BIND, nullptr) != 0) return -errno;
  }
  return 0;
}

// Phase B: the quota'd tmpfs, one directory per writable path, bound into place (those
// inside a read-only bind wait for it: finish_writable).
int setup_writable(const SpawnConfig& cfg, Step* step) {
  *step = Step::kWritableArea;
  const char* stage = cfg.writable_staging.c_str();
  if (mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, cfg.writable_opts.c_str()) != 0) {
    return -errno;
  }
  char path[512];
  for (const WritableDir& w : cfg.writable) {
    if (!join(stage, w.name.c_str(), path, sizeof path)) return -ENAMETOOLONG;
    if (mkdir(path, 0700) != 0) return -errno;
    if (chown(path, cfg.inside_id, cfg.inside_id) != 0) return -errno;
    if (chmod(path, w.mode) != 0) return -errno;
  }
  return bind_writable(cfg, false);
}

int finish_writable(const SpawnConfig& cfg, Step* step) {
  *step = Step::kWritableArea;
  int rc = bind_writable(cfg, true);
  if (rc < 0) return rc;
  // The binds keep the tmpfs alive; its staging mount point goes away.
  if (umount2(cfg.writable_staging.c_str(), MNT_DETACH) != 0) return -errno;
  return 0;
}

int setup_tree(const SpawnConfig& cfg, const int* fds, const int* areas, Step* step) {
  // Nothing mounted from here on may propagate back to the host (mount_namespaces(7)).
  *step = Step::kMountPrivate;
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return -errno;
  *step = Step::kRootTmpfs;
  // uid=0 is the namespace's root, a mapped id: the root directory then belongs to an id the
  // set-up can act as after it leaves the host's credentials.
  if (mount("tmpfs", kStagingRoot, "tmpfs", MS_NOSUID | MS_NODEV,
            "mode=0755,size=1m,nr_inodes=4096,uid=0,gid=0") != 0) {
    return -errno;
  }
  for (size_t i = 0; i < cfg.mounts.size(); ++i) {
    if (i == cfg.writable_at) {
      int rc = setup_writable(cfg, step);
      if (rc < 0) return rc;
    }
    *step = step_of(cfg.mounts[i].kind);
    int rc = apply(cfg.mounts[i], fds, areas);
    if (rc < 0) return rc;
  }
  if (cfg.writable_at >= cfg.mounts.size()) {
    int rc = setup_writable(cfg, step);
    if (rc < 0) return rc;
  }
  return finish_writable(cfg, step);
}

int finish_root(const SpawnConfig& cfg, Step* step) {
  *step = Step::kDev;
  char dev[64];
  join(kStagingRoot, "dev", dev, sizeof dev);
  int rc = set_attr(dev, kAttrRdonly | kAttrNosuid, false);
  if (rc < 0) return rc;

  // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then drops
  // the old root without needing a directory for it (pivot_root(2), NOTES).
  *step = Step::kPivotRoot;
  if (chdir(kStagingRoot) != 0) return -errno;
  if (syscall(SYS_pivot_root, ".", ".") != 0) return -errno;
  if (umount2(".", MNT_DETACH) != 0) return -errno;
  if (chdir("/") != 0) return -errno;
  // The staging directory, as seen from the new root (its path under kStagingRoot).
  if (rmdir(cfg.writable_staging.c_str() + strlen(kStagingRoot)) != 0) return -errno;

  *step = Step::kRemountRoot;
  return set_attr("/", kAttrRdonly | kAttrNosuid | kAttrNodev, false);
}

}  // namespace

int setup_root(const SpawnConfig& cfg, int* fds, int* areas, Step* step) {
  int rc = setup_tree(cfg, fds, areas, step);
  close_all(fds, kMaxBinds);
  close_all(areas, kMaxAreas);
  if (rc < 0) return rc;
  return finish_root(cfg, step);
}

}  // namespace warden::jail::mnt
