// cgroups, the native side. Creating cgroups and reading their counters is Python's job
// (warden/cgroups.py); here the child is placed before it runs anything, and the cgroup
// namespace is entered once it is in place.
#pragma once

#include <sys/types.h>

#include "jail/config.h"

namespace warden::jail::cgroup {

// Parent, v1 hierarchies: write the child's pid into each cgroup.procs. (v2 places the child
// atomically at clone time with CLONE_INTO_CGROUP, so there is nothing to do.)
int place_from_parent(pid_t pid, const SpawnConfig& cfg);

// Child, after placement: a cgroup namespace rooted at the sandbox's own cgroup, so that
// /proc/self/cgroup shows "/" and no host path.
int init_ns();

}  // namespace warden::jail::cgroup
