// User namespace: the id maps (parent) and the identity changes (child).
#pragma once

#include <sys/types.h>

#include "jail/config.h"

namespace warden::jail::user {

// Parent: writes /proc/<pid>/uid_map and gid_map. Returns 0 or -errno.
int init_ns_from_parent(pid_t pid, const SpawnConfig& cfg);

// Child, after the host-path binds: become inside root (mapped), so that what the rest of the
// set-up creates is owned by an id that exists in the namespace. Capabilities are kept: the
// kernel only clears them when leaving the namespace's root id (capabilities(7)).
int become_setup_root();

// Child, after set-up: drop supplementary groups and become the unprivileged sandbox user.
// Leaving inside root clears the permitted and effective sets.
int become_sandbox_user(const SpawnConfig& cfg);

}  // namespace warden::jail::user
