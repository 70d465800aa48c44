// The seccomp policy as plain data: which syscalls a sandboxed process may make, which ones are
// refused and why, and which are allowed only for some argument values. No system calls here
// (STYLE.md rule 3): seccomp.cc turns these tables into a filter, the binding hands them to
// Python (Docker profile, `warden doctor`), and the unit test checks them.
//
// Default action: ERRNO(EPERM), so that a program meeting a refused call fails cleanly.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace warden::seccomp {

struct Options {
  // AF_INET/AF_INET6 sockets. Off: only AF_UNIX. The network namespace already confines inet
  // sockets to loopback; refusing them as well keeps the kernel's IP stack out of reach when
  // the sandbox has no use for it.
  bool allow_inet = false;
};

// One comparison, libseccomp's SCMP_CMP_MASKED_EQ: (arg & mask) == value, on the 64-bit
// register. A mask of 0xffffffff compares what the kernel reads when the argument is an int.
struct ArgMatch {
  unsigned arg;
  uint64_t mask;
  uint64_t value;
};

// The syscall is allowed when the match holds. Several rules for one syscall are alternatives
// (any one allows); arguments that match none get the default action.
struct ArgRule {
  std::string_view syscall;
  ArgMatch match;
  std::string_view why;
};

struct Denied {
  std::string_view syscall;
  std::string_view why;
};

// A syscall answered with a fixed errno other than the default.
struct ErrnoRule {
  std::string_view syscall;
  int err;
  std::string_view why;
};

// A syscall newer than some libseccomp releases know, with its x86_64 number so that the
// filter can still allow it there.
struct KnownNumber {
  std::string_view syscall;
  int x86_64;
};

// clone(2) flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
// NEWPID, NEWNET); Docker uses the same mask. CLONE_NEWTIME (0x80) cannot be given to clone(),
// whose low byte is the exit signal, only to clone3 and unshare, both refused.
inline constexpr uint64_t kCloneNamespaceMask = 0x7E020000;

// ioctl requests that are refused even though ioctl is allowed.
inline constexpr uint32_t kTIOCSTI = 0x5412;    // pushes input into a terminal (CVE-2016-7545)
inline constexpr uint32_t kTIOCLINUX = 0x541C;  // console selection: copy/paste into the console

// The syscalls allowed unconditionally, sorted by name.
std::span<const std::string_view> allowed();
// Syscalls refused with EPERM, with the reason. Every one of them is also simply absent from
// allowed(); the table exists to document and to test the refusal.
std::span<const Denied> denied();
std::span<const ErrnoRule> errno_rules();
std::span<const KnownNumber> known_numbers();
// The architectures whose syscalls kill the process (SECCOMP_RET_KILL_PROCESS).
std::span<const std::string_view> killed_arches();

// The argument-conditioned allow rules for these options.
std::vector<ArgRule> arg_rules(const Options& opts);

// The masked comparisons whose union is "the low 32 bits of the argument are none of values".
// The kernel truncates int arguments such as ioctl's request, so 0x1'00005412 is TIOCSTI too and
// must be refused like 0x5412. libseccomp cannot add an EPERM rule when EPERM is already the
// default action, nor test "not equal under a mask", so the refusal is written as allow rules:
// one per branch of the refused values' binary trie that no refused value takes (at most 32
// per value; 34 for TIOCSTI and TIOCLINUX).
std::vector<ArgMatch> low32_none_of(unsigned arg, std::span<const uint32_t> values);

}  // namespace warden::seccomp
