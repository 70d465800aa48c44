#include "jail/fds.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace warden::jail::fds {

namespace {

constexpr int kMaxFds = 64;

// Moves fd above every number we will assign, so later dup2s cannot clobber it.
int lift(int fd, int floor) {
  if (fd < 0) return -1;
  int out = fcntl(fd, F_DUPFD_CLOEXEC, floor);
  return out < 0 ? -errno : out;
}

}  // namespace

int arrange(const SpawnConfig& cfg, ChildFds* fds) {
  int n_pass = static_cast<int>(cfg.pass_fds.size());
  if (n_pass > kMaxFds) return -EMFILE;
  // Above every number assigned below: stdio, the passed ones, four pipes and the areas.
  int floor = 3 + n_pass + 5 + kMaxAreas;
  int lifted[kMaxFds];
  int in = lift(cfg.stdin_fd, floor), out = lift(cfg.stdout_fd, floor),
      err = lift(cfg.stderr_fd, floor);
  if (in < -1 || out < -1 || err < -1) return -EBADF;
  for (int i = 0; i < n_pass; ++i) {
    lifted[i] = lift(cfg.pass_fds[i], floor);
    if (lifted[i] < 0) return lifted[i];
  }
  int rep = lift(fds->report, floor), st = fds->status >= 0 ? lift(fds->status, floor) : -1,
      rq = fds->request >= 0 ? lift(fds->request, floor) : -1,
      ini = fds->init >= 0 ? lift(fds->init, floor) : -1;
  if (rep < 0 || st < -1 || rq < -1 || ini < -1) return -EBADF;
  int areas[kMaxAreas];
  for (int i = 0; i < kMaxAreas; ++i) {
    areas[i] = fds->areas[i] >= 0 ? lift(fds->areas[i], floor) : -1;
    if (areas[i] < -1) return areas[i];
  }

  int null_fd = -1;
  if (in < 0 || out < 0 || err < 0) {
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) return -errno;
  }
  int stdio[3] = {in < 0 ? null_fd : in, out < 0 ? null_fd : out, err < 0 ? null_fd : err};
  for (int i = 0; i < 3; ++i) {
    if (dup2(stdio[i], i) < 0) return -errno;
  }
  for (int i = 0; i < n_pass; ++i) {
    if (dup2(lifted[i], 3 + i) < 0) return -errno;
  }
  int next = 3 + n_pass;
  fds->go = -1;
  if (dup3(rep, next, O_CLOEXEC) < 0) return -errno;
  fds->report = next++;
  if (st >= 0) {
    if (dup3(st, next, O_CLOEXEC) < 0) return -errno;
    fds->status = next++;
  }
  if (rq >= 0) {
    if (dup3(rq, next, O_CLOEXEC) < 0) return -errno;
    fds->request = next++;
  }
  if (ini >= 0) {
    if (dup3(ini, next, O_CLOEXEC) < 0) return -errno;
    fds->init = next++;
  }
  for (int i = 0; i < kMaxAreas; ++i) {
    if (areas[i] < 0) continue;
    if (dup3(areas[i], next, O_CLOEXEC) < 0) return -errno;
    fds->areas[i] = next++;
  }
  if (syscall(SYS_close_range, next, ~0U, 0) != 0) return -errno;
  return 0;
}

}  // namespace warden::jail::fds
