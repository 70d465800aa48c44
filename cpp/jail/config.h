// Everything the child needs, prepared by the parent before clone.
//
// The child reads this structure and makes syscalls; it never allocates, so every string and
// array it uses is built here, in the parent, ahead of time (paths already prefixed with the
// staging root, PATH candidates already joined, the seccomp program already compiled).
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace warden::jail {

// Where the new root is assembled inside the child's private mount namespace before
// pivot_root. Mounting over it there does not affect the host: the tree is made private first.
inline constexpr const char* kStagingRoot = "/tmp";

enum class MountKind : int {
  kDir,          // mkdir target
  kFile,         // create target with `data` as content
  kSymlink,      // symlink `data` -> target
  kBindRO,       // bind `source` read-only, nosuid, nodev, recursively
  kBindDev,      // bind a host device node (no nodev) onto a file
  kTmpfs,        // mount tmpfs with options `data`
  kProc,         // fresh procfs
  kMask,         // hide target: /dev/null over a file, empty read-only tmpfs over a dir
  kReadOnly,     // bind target onto itself, read-only
  kRemountRO,    // make an existing mount read-only (after it has been populated)
  kBindArea,     // attach a warden host area: a detached, idmapped, read-only clone of
                 // `source` that the parent made (jail/idmap.h), moved onto target
  kDevpts,       // a devpts instance of the sandbox's own, with options `data`
};

struct MountOp {
  MountKind kind;
  std::string source;   // host path (binds)
  std::string target;   // full path under kStagingRoot
  std::string data;     // tmpfs options, file content or symlink target
  unsigned mode = 0755;
  bool optional = false;  // a missing source or target is skipped rather than fatal
  bool is_dir = true;     // for binds: whether the source is a directory
  int source_index = -1;  // binds: slot of the source's O_PATH descriptor (see mnt.h);
                          // areas: slot of the area's detached mount (jail/idmap.h)
};

// Most host paths one sandbox may bind.
inline constexpr int kMaxBinds = 64;
// Most warden host areas one sandbox may have (its read-only workspace, a plugin's files).
inline constexpr int kMaxAreas = 8;

// A directory of the quota'd writable tmpfs, bound to `target` (full path under kStagingRoot).
struct WritableDir {
  std::string name;     // directory inside the writable tmpfs
  std::string target;
  unsigned mode;
  bool late = false;    // the target lies inside a read-only bind: bound after the binds
};

struct SpawnConfig {
  // The working directory of the set-up's last step. In exec mode the command itself comes
  // later, in the request start() sends (jail/request.h), with its own directory.
  std::string cwd = "/workspace";
  std::string hostname = "warden";

  // Identity. Inside uid/gid `inside_id` is mapped to `host_id`, the sandbox's own host id
  // (one per live sandbox, handed out by warden.host.identity), and inside 0 to
  // `outside_base`, an id that only the set-up uses and that owns nothing. The command runs as
  // `inside_id`, with no capabilities. host_id also owns the sandbox's user namespace: the
  // kernel charges per-user budgets (inotify, queued signals, message queues, namespaces) up
  // the namespace chain to each namespace's owner, and pipe buffers and descriptors in flight
  // to the real uid, so every one of them lands on this sandbox's id and on no one else's.
  uint32_t inside_id = 1000;
  uint32_t outside_base = 2000000000u;
  uint32_t host_id = 0;  // required: 0 fails the spawn
  std::string uid_map;  // filled by prepare()
  std::string gid_map;

  // Filesystem.
  std::vector<MountOp> mounts;
  // mounts[0, writable_at) come before the writable area, the rest after: read-only binds go
  // on top of it, so a host path below /tmp (a Python in a virtualenv there) stays visible.
  size_t writable_at = 0;
  std::vector<WritableDir> writable;
  uint64_t disk_bytes = 64ull << 20;
  std::string writable_staging;  // where the writable tmpfs is mounted before binding
  std::string writable_opts;     // tmpfs options, filled by prepare()

  // Resource limits, which the child sets on itself at the end of its set-up (rlimit.h).
  uint64_t open_files = 256;
  uint64_t file_size_bytes = 0;  // 0: unlimited
  uint64_t cpu_time_s = 0;       // 0: unlimited
  // Budgets the kernel counts per user, kept small: untrusted code has little use for queued
  // real-time signals (timer_create preallocates one per timer) or POSIX message queues.
  uint64_t sigpending = 256;
  uint64_t msgqueue_bytes = 128 << 10;  // one queue of the default size (10 x 8 KiB)

  // cgroups: v1 writes the child's pid into each file; v2 passes a directory fd to clone3.
  std::vector<std::string> cgroup_procs;
  int cgroup_fd = -1;

  // Compiled seccomp program; required (fail closed when empty).
  std::vector<sock_filter> seccomp;

  // Descriptors: the child's stdio (-1: /dev/null) and extra descriptors passed on purpose,
  // which appear in the sandbox as 3, 4, ... in this order.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::vector<int> pass_fds;

  // Fork mode: once contained, the child forks the worker, which returns to the caller inside
  // the sandbox (the zygote uses this to run a Python worker), and execs warden-init as the
  // sandbox's pid 1, which reaps every process and reports how the worker ended. In exec mode
  // the child becomes that init at once and waits for its command (spawn.h, start), forks it,
  // reaps, and reports its status: a sandbox is made whole before anyone says what will run in
  // it. Either way pid 1 is warden-init, never the code the sandbox runs.
  bool fork_mode = false;

  // Areas (MountKind::kBindArea) are idmapped to the sandbox's host id. Where their file
  // system has no idmapped mounts (EINVAL: tmpfs before Linux 6.3), true takes the same
  // read-only clone without the mapping, for areas whose files "other" may read (warden's
  // own, inside their 0700 directory); false fails the spawn at step idmap.
  bool area_unmapped_ok = false;

  // Fork mode: the sandbox becomes a child of the caller's parent (clone(2), CLONE_PARENT), so
  // that the caller, a short-lived process of its own, may exit once the sandbox is made.
  bool sibling = false;

  // Exec mode: keep a reference to the sandbox's mount namespace (Child::mount_ns_fd), so
  // that the teardown of its mounts waits for the caller's close() instead of delaying the
  // exit of the sandbox's last process.
  bool hold_mount_ns = false;

  // A network namespace made ahead of time (net::make_ns), or -1 for a new one at clone.
  int netns_fd = -1;

  // An O_PATH descriptor of warden-init, which the set-up child execs as pid 1, and its argv
  // (descriptor numbers are fixed by fds::arrange, so the parent can write them; in fork mode
  // the child appends the worker's pid).
  int init_fd = -1;
  std::vector<std::string> init_argv;
  std::vector<char*> init_argv_ptrs;

  uint32_t last_cap = 40;  // /proc/sys/kernel/cap_last_cap, read by the parent

  // Builds the pointer arrays and generated strings above. Parent side; may allocate.
  void prepare();
};

}  // namespace warden::jail
