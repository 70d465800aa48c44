// Mount namespace: the sandbox's root filesystem.
//
// The parent plans (plan_root, mnt_plan.h: which binds, which generated files); the child
// carries the plan out in its private mount namespace under kStagingRoot, then pivots into it.
#pragma once

#include <string>

#include "jail/config.h"
#include "jail/mnt_plan.h"
#include "jail/status.h"

namespace warden::jail::mnt {

// Parent: the plan of mnt_plan.h against the real host (stat, lstat and readlink of its
// paths, to mirror its /bin and /lib links and to know which binds are directories).
int plan_root(const RootSpec& spec, SpawnConfig* cfg, std::string* what);

// Child, still with the host credentials it inherited: opens every bind source as an O_PATH
// descriptor into `fds` (kMaxBinds slots), so that host paths resolve as they do for the
// parent (a Python installed under /root, mode 0700, included). Nothing is created here: a
// tmpfs made in the namespace refuses inodes from an id it cannot map (EOVERFLOW).
int open_sources(const SpawnConfig& cfg, int* fds, Step* step);

// Child, as inside root: private propagation, root tmpfs, binds (through the descriptors),
// host areas (the parent's detached mounts, `areas`, by slot: jail/idmap.h), /proc, /dev,
// the writable tmpfs, pivot_root, read-only root. Closes the descriptors and the areas.
int setup_root(const SpawnConfig& cfg, int* fds, int* areas, Step* step);

}  // namespace warden::jail::mnt
