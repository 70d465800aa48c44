// Network namespace: the sandbox gets a fresh one with only loopback, up.
#pragma once

namespace warden::jail::net {

// Child: bring "lo" up with SIOCSIFFLAGS (netdevice(7)); no netlink needed.
int init_ns();

// Parent, ahead of time: a new network namespace with lo up, as an open descriptor. It is
// made on the calling thread (network namespaces are per thread) which then returns to the
// namespace it was in. Such a namespace belongs to the host's user namespace, so a sandbox
// placed in it cannot reconfigure it at all. Returns the fd or -errno.
int make_ns();

// Parent: the calling thread enters `fd` (CLONE_NEWNET) / returns to its own namespace.
int enter_ns(int fd);
int leave_ns();

}  // namespace warden::jail::net
