// The child's side of sandbox set-up, in one ordered list (contain.cc).
#pragma once

#include "jail/config.h"
#include "jail/status.h"

namespace warden::jail {

// Descriptor numbers inside the child after arrange_fds: stdio, then the passed descriptors
// from 3 on, then warden's own pipes.
struct ChildFds {
  int go;       // read end: the parent's go-ahead (closed once read)
  int report;   // write end, close-on-exec: (step, errno) on failure
  int status;   // write end: the init's FinalStatus
  int init;     // warden-init (O_PATH), exec'd as the sandbox's pid 1
  int request = -1;  // exec mode: the init's end of the request socket, else -1
  // The detached mounts of warden's host areas, by slot (jail/idmap.h); -1 when unused.
  // Closed once attached.
  int areas[kMaxAreas] = {-1, -1, -1, -1, -1, -1, -1, -1};
};
static_assert(kMaxAreas == 8, "ChildFds::areas lists one -1 per slot");

// Runs every set-up step in order. Returns 0 with the process fully contained (seccomp
// installed), or -errno with *step naming the failed step. Never allocates.
int contain(const SpawnConfig& cfg, ChildFds* fds, Step* step);

// Writes a report record: (step, errno) for a failure; warden-init reports success itself.
void report(int fd, Step step, int err);

}  // namespace warden::jail
