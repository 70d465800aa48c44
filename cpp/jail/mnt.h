// Mount namespace: the sandbox's root filesystem.
//
// The parent plans (plan_root: which binds, which generated files); the child carries the plan
// out in its private mount namespace under kStagingRoot, then pivots into it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "jail/config.h"
#include "jail/status.h"

namespace warden::jail::mnt {

struct RootSpec {
  // Host paths bound read-only at the same path inside (the Python installation, a plugin's
  // directory...). /usr, the /bin and /lib links and a few /etc files are always there.
  std::vector<std::string> ro_paths;
  // Host path -> sandbox path, read-only.
  std::vector<std::pair<std::string, std::string>> ro_binds;
  // Directories of the quota'd writable area: (sandbox path, mode). /tmp and /dev/shm are
  // always added; /workspace unless the caller names its own.
  std::vector<std::pair<std::string, unsigned>> writable;
  uint32_t inside_id = 1000;
  std::string hostname = "warden";
};

// Parent: fills cfg->mounts and cfg->writable. Reads the host (lstat, readlink) to mirror its
// /bin and /lib links; returns 0 or -errno with *what naming the offending path.
int plan_root(const RootSpec& spec, SpawnConfig* cfg, std::string* what);

// Child, still with the host credentials it inherited: opens every bind source as an O_PATH
// descriptor into `fds` (kMaxBinds slots), so that host paths resolve as they do for the
// parent (a Python installed under /root, mode 0700, included). Nothing is created here: a
// tmpfs made in the namespace refuses inodes from an id it cannot map (EOVERFLOW).
int open_sources(const SpawnConfig& cfg, int* fds, Step* step);

// Child, as inside root: private propagation, root tmpfs, binds (through the descriptors),
// /proc, /dev, the writable tmpfs, pivot_root, read-only root. Closes the descriptors.
int setup_root(const SpawnConfig& cfg, int* fds, Step* step);

}  // namespace warden::jail::mnt
