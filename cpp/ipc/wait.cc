#include "ipc/wait.h"

#include <poll.h>
#include <time.h>

#include <cerrno>

namespace ipc {
namespace {

int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no system call
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

int wait_readable(int fd, int64_t spin_ns, int timeout_ms) {
  const int64_t start = now_ns();
  struct pollfd p = {fd, POLLIN, 0};
  if (spin_ns > 0) {
    const int64_t until = start + spin_ns;
    do {
      p.revents = 0;
      int n = poll(&p, 1, 0);
      // Any event counts: POLLIN, or POLLHUP/POLLERR/POLLNVAL, which the read then reports.
      if (n > 0) return static_cast<int>(Wait::kSpun);
      if (n < 0) return -errno;
    } while (now_ns() < until);
  }
  int left = timeout_ms;
  if (timeout_ms >= 0) {
    // What remains of the timeout, rounded up: never return before it has run out.
    int64_t spent_ms = (now_ns() - start) / 1000000;
    left = spent_ms >= timeout_ms ? 0 : timeout_ms - static_cast<int>(spent_ms);
  }
  p.revents = 0;
  int n = poll(&p, 1, left);
  if (n > 0) return static_cast<int>(Wait::kSlept);
  if (n == 0) return static_cast<int>(Wait::kTimeout);
  return -errno;
}

}  // namespace ipc
