#include "jail/net.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <cstdlib>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace warden::jail::net {

int init_ns() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  int rc = 0;
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    rc = -errno;
  } else {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) rc = -errno;
  }
  close(fd);
  return rc;
}

namespace {

// The thread's own network namespace, opened once; the spawning thread returns to it.
int home_ns() {
  static int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  return fd;
}

}  // namespace

int make_ns() {
  int home = home_ns();
  if (home < 0) return -errno;
  if (unshare(CLONE_NEWNET) != 0) return -errno;
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int rc = fd < 0 ? -errno : init_ns();
  if (setns(home, CLONE_NEWNET) != 0) {
    // The thread would stay in the new namespace: unrecoverable for this thread's sockets.
    abort();
  }
  if (rc < 0) {
    if (fd >= 0) close(fd);
    return rc;
  }
  return fd;
}

int enter_ns(int fd) {
  if (home_ns() < 0) return -errno;
  return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
}

int leave_ns() { return setns(home_ns(), CLONE_NEWNET) == 0 ? 0 : -errno; }

}  // namespace warden::jail::net
