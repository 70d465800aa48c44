// The parent's side of a running command: feeds stdin, collects stdout and stderr up to a
// cap, enforces the wall deadline by killing the sandbox's init (which takes every process
// of the pid namespace with it), and reaps.
#pragma once

#include <cstdint>
#include <string>

#include "jail/spawn.h"
#include "jail/status.h"

namespace warden::jail {

struct Outcome {
  bool timed_out = false;
  bool have_status = false;   // the init reported; false when it was killed (timeout, OOM)
  FinalStatus status{};
  int init_wait_status = 0;   // how the init itself ended
  std::string out, err;
  bool out_truncated = false, err_truncated = false;
  uint64_t out_dropped = 0, err_dropped = 0;  // bytes read past the cap and thrown away
  double duration_s = 0;
  bool disk_full_at_kill = false;  // statfs of the writable area just before a kill
};

// Runs until the init exits. `stdin_fd` (write end, or -1) receives `input` and is closed;
// `out_fd`/`err_fd` are read ends. Owns and closes every descriptor it is given, and the
// child's pidfd and status_fd. `deadline_ns` is CLOCK_MONOTONIC; 0 means none.
int supervise(Child* child, int stdin_fd, const std::string& input, int out_fd, int err_fd,
              uint64_t deadline_ns, size_t cap, Outcome* outcome);

// Reads the FinalStatus record an init writes to `status_fd` (the read end of its status pipe)
// as it exits, waiting up to `timeout_ms` (-1: no bound). Returns 1 with *out filled, 0 when
// the pipe closed without a record (the init was killed before its child ended: a timeout, a
// kill of the whole sandbox, an OOM kill of its cgroup), -ETIMEDOUT when neither happened in
// time (the init, and so its child, still lives), or -errno.
int read_final_status(int status_fd, int timeout_ms, FinalStatus* out);

uint64_t monotonic_ns();

}  // namespace warden::jail
