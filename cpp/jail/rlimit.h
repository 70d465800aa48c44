// Resource limits, set by the child on itself at the end of its set-up. Lowering one's own
// limits needs no privilege (setrlimit(2)); raising one above the host's hard limit fails with
// EPERM, which fails the set-up closed rather than running with less than asked. They are not
// set by the parent with prlimit(2): the child's ids differ from the parent's from the clone on
// (its user namespace is created under the sandbox's host id, user.h), and prlimit on a process
// of other ids needs CAP_SYS_RESOURCE over its namespace, which host root may lack (a container
// that drops it). The open-files limit must wait until the descriptors are arranged and the
// set-up's own descriptors closed: before that the child still holds a copy of the host's
// descriptor table, whose numbers may lie above the limit, and moving a descriptor (F_DUPFD)
// would fail with EMFILE.
#pragma once

#include "jail/config.h"

namespace warden::jail::rlimit {

// Child side, after fds::arrange and the mounts: RLIMIT_CORE (0), RLIMIT_SIGPENDING,
// RLIMIT_MSGQUEUE, RLIMIT_FSIZE and RLIMIT_CPU when asked, and RLIMIT_NOFILE (soft and hard).
int limit_self(const SpawnConfig& cfg);

}  // namespace warden::jail::rlimit
