// Network namespace: the sandbox gets a fresh one with only loopback, up.
#pragma once

namespace warden::jail::net {

// Child: bring "lo" up with SIOCSIFFLAGS (netdevice(7)); no netlink needed.
int init_ns();

}  // namespace warden::jail::net
