// Resource limits, set by the parent on the child with prlimit(2) before the child runs: the
// parent may set any value, the child could only lower its own.
#pragma once

#include <sys/types.h>

#include "jail/config.h"

namespace warden::jail::rlimit {

int set_from_parent(pid_t pid, const SpawnConfig& cfg);

}  // namespace warden::jail::rlimit
