// Seccomp: the policy (seccomp_policy.h) compiled to classic BPF in the parent, installed in
// the child as its last set-up step. The split follows the fork: compile() allocates and calls
// into libseccomp, so it runs once in the parent and its result is cached; install() is a single
// system call, safe between clone and exec.
#pragma once

#include <linux/filter.h>

#include <string>
#include <string_view>
#include <vector>

#include "jail/seccomp_policy.h"

namespace warden::seccomp {

// Parent side: compiles the policy for the native architecture. Every other architecture the
// CPU can enter (i386 through int 0x80, x32 through the 0x40000000 bit) kills the process.
// Returns 0, or -errno with *err naming the libseccomp call that failed.
int compile(const Options& opts, std::vector<sock_filter>* out, std::string* err);

// Child side, the last set-up step: installs a compiled program with seccomp(2). No allocation,
// no locks, async-signal-safe. no_new_privs must already be set (seccomp(2): without it an
// unprivileged caller gets EACCES). Returns 0 or -errno.
int install(const sock_filter* prog, unsigned short len);

// The native number of a syscall named in the policy, or -1 when this architecture (or this
// libseccomp) does not know it. Used to report what the compiled filter really contains.
int native_number(std::string_view name);

}  // namespace warden::seccomp
