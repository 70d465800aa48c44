// Resource limits. Most are set by the parent on the child with prlimit(2) before the child
// runs: the parent may set any value, the child could only lower its own. The open-files limit
// is the child's own, set once its descriptors are arranged: before that it still holds a
// copy of the host's descriptor table, whose numbers may lie above the limit, and moving a
// descriptor (F_DUPFD) would then fail with EMFILE.
#pragma once

#include <sys/types.h>

#include "jail/config.h"

namespace warden::jail::rlimit {

int set_from_parent(pid_t pid, const SpawnConfig& cfg);

// Child side, after fds::arrange: RLIMIT_NOFILE (soft and hard) to cfg.open_files.
int limit_open_files(const SpawnConfig& cfg);

}  // namespace warden::jail::rlimit
