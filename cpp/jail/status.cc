#include "jail/status.h"

namespace warden::jail {

const char* step_name(Step step) {
  switch (step) {
    case Step::kNone: return "none";
    case Step::kWaitParent: return "wait-parent";
    case Step::kFds: return "fds";
    case Step::kMountPrivate: return "mount-private";
    case Step::kRootTmpfs: return "root-tmpfs";
    case Step::kMountLayout: return "mount-layout";
    case Step::kBindMount: return "bind-mount";
    case Step::kProc: return "proc";
    case Step::kDev: return "dev";
    case Step::kWritableArea: return "writable-area";
    case Step::kPivotRoot: return "pivot-root";
    case Step::kRemountRoot: return "remount-root";
    case Step::kHostname: return "hostname";
    case Step::kLoopback: return "loopback";
    case Step::kCgroupNs: return "cgroup-namespace";
    case Step::kUserLimits: return "user-limits";
    case Step::kIdentity: return "identity";
    case Step::kCaps: return "capabilities";
    case Step::kNoNewPrivs: return "no-new-privs";
    case Step::kChdir: return "chdir";
    case Step::kSeccomp: return "seccomp";
    case Step::kFork: return "fork";
    case Step::kExec: return "execve";
    case Step::kClone: return "clone3";
    case Step::kUserMap: return "user-map";
    case Step::kNsOwner: return "namespace-owner";
    case Step::kIdmap: return "idmap";
    case Step::kAreaMount: return "area-mount";
    case Step::kCgroupPlace: return "cgroup-place";
    case Step::kRlimit: return "rlimit";
    case Step::kPipe: return "pipe";
    case Step::kHandshake: return "handshake";
    case Step::kDone: return "done";
  }
  return "unknown";
}

}  // namespace warden::jail
