// clone3 into fresh namespaces and the parent/child handshake.
#pragma once

#include <sys/types.h>

#include <string>

#include "jail/config.h"
#include "jail/status.h"

namespace warden::jail {

struct Child {
  pid_t pid = -1;       // the sandbox's init (warden-init, pid 1 inside)
  int pidfd = -1;       // for race-free signals and polling
  int status_fd = -1;   // read end of the init's FinalStatus pipe: how the command or worker ended
  int mount_ns_fd = -1; // with SpawnConfig::hold_mount_ns: the sandbox's mount namespace
  // Exec mode, until start(): where the request goes, and the read end of the report pipe,
  // which tells whether the command was exec'd.
  int request_fd = -1;
  int report_fd = -1;
};

struct SpawnError {
  Step step = Step::kNone;
  int err = 0;
};

// Parent: creates the sandbox. In exec mode returns 0 once the sandbox's init waits for its
// command (start). In fork mode returns 0 in the parent once the init reaps for the worker,
// and in the worker, like fork(): *in_child tells which side this is; the worker is fully
// contained, seccomp is installed, and its parent is the sandbox's init.
// On failure returns -1 with *error set; the half-made child has been killed and, unless it
// is a sibling (SpawnConfig::sibling), reaped.
int spawn(const SpawnConfig& cfg, Child* child, SpawnError* error, bool* in_child);

// Exec mode: sends `request` (request::encode) and returns 0
// once the command has been exec'd. On failure (the init refused the request, the command
// could not be exec'd, the init was gone) returns -1 with *error set, and the sandbox has
// been killed and reaped. Either way request_fd and report_fd are closed.
int start(Child* child, const std::string& request, SpawnError* error);

// Kills and reaps a spawned sandbox that will not be used, closing every descriptor in it.
void discard(Child* child);

}  // namespace warden::jail
