// Descriptors: the child keeps exactly its stdio, the descriptors passed on purpose, and
// warden's own pipes; everything else inherited from the host is closed.
#pragma once

#include "jail/config.h"
#include "jail/contain.h"

namespace warden::jail::fds {

int arrange(const SpawnConfig& cfg, ChildFds* fds);

}  // namespace warden::jail::fds
