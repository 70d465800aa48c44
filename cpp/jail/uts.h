// UTS and IPC namespaces: a hostname of our own; the IPC namespace needs no set-up (a new one
// is empty: no SysV objects, no POSIX message queues of the host).
#pragma once

#include "jail/config.h"

namespace warden::jail::uts {

int init_ns(const SpawnConfig& cfg);

}  // namespace warden::jail::uts
