// The child's set-up steps and how a failure travels back to the parent.
//
// Between clone and exec nothing may allocate, lock or throw: each step returns 0 or -errno,
// and the first failure is written to the report pipe as a fixed-size record, then the child
// exits. The parent turns the record into SandboxSetupError(step, errno).
#pragma once

#include <cstdint>

namespace warden::jail {

enum class Step : int32_t {
  kNone = 0,
  kWaitParent,      // reading the parent's go-ahead
  kFds,             // arranging and closing descriptors
  kMountPrivate,    // making the inherited mount tree private
  kRootTmpfs,       // the new root's tmpfs
  kMountLayout,     // directories, files and links in the new root
  kBindMount,       // read-only binds of host paths
  kProc,            // fresh /proc and its masks
  kDev,             // minimal /dev
  kWritableArea,    // the quota'd tmpfs for /workspace and /tmp
  kPivotRoot,       // pivot_root and detaching the old root
  kRemountRoot,     // making the new root read-only
  kHostname,        // sethostname in the new uts namespace
  kLoopback,        // bringing lo up in the new network namespace
  kCgroupNs,        // unshare(CLONE_NEWCGROUP) after cgroup placement
  kIdentity,        // setgroups/setresgid/setresuid to the sandbox user
  kCaps,            // dropping every capability, bounding and ambient sets
  kNoNewPrivs,      // prctl(PR_SET_NO_NEW_PRIVS)
  kChdir,           // the working directory
  kSeccomp,         // installing the seccomp filter (always last)
  kFork,            // the init forking the command
  kExec,            // execve of warden-init (a command that cannot be exec'd exits 127/126)
  kClone,           // parent: clone3
  kUserMap,         // parent: uid_map/gid_map
  kCgroupPlace,     // parent: writing the child into its cgroup
  kRlimit,          // child: its own resource limits
  kPipe,            // parent: creating pipes
  kHandshake,       // parent: talking to the child
  kDone,            // the sandbox's init is ready (set-up finished)
  // Added later; appended, as the numbers are what the child and warden-init report.
  kUserLimits,      // the user namespace's own limits (/proc/sys/user)
  kNsOwner,         // parent: taking the sandbox's host id to create its user namespace
  kIdmap,           // parent: the idmapped clones of warden's host areas (jail/idmap.h)
  kAreaMount,       // child: attaching a host area in the new root
};

const char* step_name(Step step);

struct Report {
  int32_t step;
  int32_t err;
};

// Written once by the sandbox's init to the status pipe when the command has ended.
struct FinalStatus {
  int32_t wait_status;      // as from wait4() for the command
  int32_t have_disk;        // 1 when the statfs below succeeded
  uint64_t disk_free_bytes; // free space of the writable area at the end
  uint64_t disk_total_bytes;
  uint64_t cpu_user_us;     // RUSAGE_CHILDREN of the init: the command and its reaped children
  uint64_t cpu_sys_us;
  uint64_t max_rss_kb;
};

}  // namespace warden::jail
