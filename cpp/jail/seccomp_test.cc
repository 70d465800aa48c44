// Unit test of the seccomp policy: the tables' invariants, the ioctl decomposition, the compiled
// program run through a classic-BPF interpreter for every syscall the policy names, and a real
// install in a forked child. Prints the program's length and the compile time (no timing is
// asserted). Exit status: 0 when every check passed.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "jail/seccomp.h"
#include "jail/seccomp_policy.h"
#include "testing/check.h"

namespace sc = warden::seccomp;

namespace {

// A classic-BPF interpreter for seccomp programs (the subset the kernel accepts for seccomp:
// loads from seccomp_data, ALU, jumps, scratch memory, returns).
uint32_t run_bpf(const std::vector<sock_filter>& prog, const seccomp_data& d,
                 size_t* executed = nullptr) {
  uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
  const auto* bytes = reinterpret_cast<const unsigned char*>(&d);
  size_t pc = 0;
  for (size_t steps = 0; pc < prog.size() && steps < 100000; ++steps) {
    const sock_filter& f = prog[pc++];
    uint32_t src = (BPF_SRC(f.code) == BPF_X) ? x : f.k;
    switch (BPF_CLASS(f.code)) {
      case BPF_LD:
        if (BPF_MODE(f.code) == BPF_ABS && f.k + 4 <= sizeof d) std::memcpy(&a, bytes + f.k, 4);
        else if (BPF_MODE(f.code) == BPF_IMM) a = f.k;
        else if (BPF_MODE(f.code) == BPF_MEM) a = mem[f.k % BPF_MEMWORDS];
        else if (BPF_MODE(f.code) == BPF_LEN) a = sizeof d;
        else return 0xdeadbeef;
        break;
      case BPF_LDX:
        if (BPF_MODE(f.code) == BPF_IMM) x = f.k;
        else if (BPF_MODE(f.code) == BPF_MEM) x = mem[f.k % BPF_MEMWORDS];
        else if (BPF_MODE(f.code) == BPF_LEN) x = sizeof d;
        else return 0xdeadbeef;
        break;
      case BPF_ST: mem[f.k % BPF_MEMWORDS] = a; break;
      case BPF_STX: mem[f.k % BPF_MEMWORDS] = x; break;
      case BPF_ALU:
        switch (BPF_OP(f.code)) {
          case BPF_ADD: a += src; break;
          case BPF_SUB: a -= src; break;
          case BPF_MUL: a *= src; break;
          case BPF_DIV: if (src == 0) return 0; a /= src; break;
          case BPF_MOD: if (src == 0) return 0; a %= src; break;
          case BPF_AND: a &= src; break;
          case BPF_OR: a |= src; break;
          case BPF_XOR: a ^= src; break;
          case BPF_LSH: a <<= (src & 31); break;
          case BPF_RSH: a >>= (src & 31); break;
          case BPF_NEG: a = -a; break;
          default: return 0xdeadbeef;
        }
        break;
      case BPF_JMP: {
        if (BPF_OP(f.code) == BPF_JA) { pc += f.k; break; }
        bool t = false;
        switch (BPF_OP(f.code)) {
          case BPF_JEQ: t = a == src; break;
          case BPF_JGT: t = a > src; break;
          case BPF_JGE: t = a >= src; break;
          case BPF_JSET: t = (a & src) != 0; break;
          default: return 0xdeadbeef;
        }
        pc += t ? f.jt : f.jf;
        break;
      }
      case BPF_RET:
        if (executed) *executed = steps + 1;
        return BPF_RVAL(f.code) == BPF_A ? a : f.k;
      case BPF_MISC:
        if (BPF_MISCOP(f.code) == BPF_TAX) x = a; else a = x;
        break;
    }
  }
  return 0xdeadbeef;  // fell off the end: the kernel's checker would have refused it
}

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t kEperm = SECCOMP_RET_ERRNO | EPERM;
constexpr uint32_t kEnosys = SECCOMP_RET_ERRNO | ENOSYS;
constexpr uint32_t kKill = SECCOMP_RET_KILL_PROCESS;

#if defined(__x86_64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_AARCH64;
#endif

uint32_t verdict(const std::vector<sock_filter>& prog, int nr, uint64_t a0 = 0, uint64_t a1 = 0,
                 uint32_t arch = kNativeArch) {
  seccomp_data d{};
  d.nr = nr;
  d.arch = arch;
  d.args[0] = a0;
  d.args[1] = a1;
  return run_bpf(prog, d);
}

void test_tables() {
  auto allowed = sc::allowed();
  CHECK(std::is_sorted(allowed.begin(), allowed.end()), "allowlist not sorted");
  std::set<std::string_view> allow(allowed.begin(), allowed.end());
  CHECK(allow.size() == allowed.size(), "duplicate names in the allowlist");
  std::set<std::string_view> deny;
  for (const auto& d : sc::denied()) {
    CHECK(deny.insert(d.syscall).second, "%.*s denied twice", (int)d.syscall.size(),
          d.syscall.data());
    CHECK(!allow.count(d.syscall), "%.*s both allowed and denied", (int)d.syscall.size(),
          d.syscall.data());
    CHECK(!d.why.empty(), "no reason for %.*s", (int)d.syscall.size(), d.syscall.data());
  }
  // The calls issue 2 requires to be refused.
  const char* must_deny[] = {
      "mount", "umount2", "pivot_root", "unshare", "setns", "ptrace", "process_vm_readv",
      "process_vm_writev", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
      "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load",
      "kexec_file_load", "init_module", "finit_module", "delete_module", "open_by_handle_at",
      "name_to_handle_at", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount",
      "mount_setattr", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
      "acct", "quotactl", "swapon", "swapoff", "reboot"};
  for (const char* n : must_deny) CHECK(deny.count(n), "%s is not in the denied table", n);
  // AIO contexts come from a host-wide pool (fs.aio-max-nr).
  const char* aio[] = {"io_setup", "io_submit", "io_getevents", "io_pgetevents", "io_cancel",
                       "io_destroy"};
  for (const char* n : aio) CHECK(deny.count(n), "%s is not in the denied table", n);
  for (const auto& r : sc::errno_rules())
    CHECK(!allow.count(r.syscall) && !deny.count(r.syscall), "errno rule %.*s overlaps",
          (int)r.syscall.size(), r.syscall.data());
  for (const auto& r : sc::arg_rules({.allow_inet = true}))
    CHECK(!allow.count(r.syscall) && !deny.count(r.syscall), "arg rule %.*s overlaps",
          (int)r.syscall.size(), r.syscall.data());
}

bool any_match(const std::vector<sc::ArgMatch>& ms, uint64_t v) {
  for (const auto& m : ms)
    if ((v & m.mask) == m.value) return true;
  return false;
}

void test_low32_none_of() {
  const uint32_t refused[] = {sc::kTIOCSTI, sc::kTIOCLINUX};
  auto ms = sc::low32_none_of(1, refused);
  CHECK(!ms.empty(), "no rules");
  std::mt19937_64 rng(12345);
  for (uint64_t low = 0; low <= 0x1ffff; ++low) {
    uint64_t high = (low % 3 == 0) ? 0 : (rng() & 0xffffffff00000000ull);
    uint64_t v = high | low;
    bool refused_v = (low == sc::kTIOCSTI || low == sc::kTIOCLINUX);
    CHECK(any_match(ms, v) == !refused_v, "value 0x%llx", (unsigned long long)v);
  }
  for (int i = 0; i < 100000; ++i) {
    uint64_t v = rng();
    uint32_t low = static_cast<uint32_t>(v);
    CHECK(any_match(ms, v) == (low != sc::kTIOCSTI && low != sc::kTIOCLINUX), "value 0x%llx",
          (unsigned long long)v);
  }
  // Another set, whose values differ in four bits.
  const uint32_t set2[] = {0x10, 0x13, 0x80};
  auto ms2 = sc::low32_none_of(0, set2);
  for (uint64_t low = 0; low <= 0x3ff; ++low) {
    for (uint64_t high : {0ull, 0x1'00000000ull, 0xffffffff'00000000ull}) {
      bool in = low == 0x10 || low == 0x13 || low == 0x80;
      CHECK(any_match(ms2, high | low) == !in, "set2 value 0x%llx",
            (unsigned long long)(high | low));
    }
  }
  // Values that differ in every bit, and duplicates.
  const uint32_t wide[] = {0, 0xffffffff, 0xffffffff};
  auto ms3 = sc::low32_none_of(0, wide);
  for (uint64_t v : {0ull, 0xffffffffull, 1ull, 0xfffffffeull, 0x1'00000000ull, 0x7fffffffull,
                     0xffffffff'ffffffffull, 0x80000000ull})
    CHECK(any_match(ms3, v) ==
              (static_cast<uint32_t>(v) != 0 && static_cast<uint32_t>(v) != 0xffffffff),
          "wide value 0x%llx", (unsigned long long)v);
  CHECK(any_match(sc::low32_none_of(0, {}), 0x5412), "empty set refuses");
}

void test_program(const std::vector<sock_filter>& prog, bool inet) {
  for (std::string_view n : sc::allowed()) {
    int nr = sc::native_number(n);
    if (nr < 0) continue;
    CHECK(verdict(prog, nr) == kAllow, "%.*s (%d) not allowed", (int)n.size(), n.data(), nr);
  }
  for (const auto& d : sc::denied()) {
    int nr = sc::native_number(d.syscall);
    if (nr < 0) continue;
    CHECK(verdict(prog, nr) == kEperm, "%.*s (%d) not EPERM", (int)d.syscall.size(),
          d.syscall.data(), nr);
  }
  CHECK(verdict(prog, sc::native_number("clone3")) == kEnosys, "clone3 not ENOSYS");
  for (const auto& r : sc::errno_rules()) {
    int nr = sc::native_number(r.syscall);
    if (nr < 0) continue;
    CHECK(verdict(prog, nr) == (SECCOMP_RET_ERRNO | static_cast<uint32_t>(r.err)), "%.*s (%d)",
          (int)r.syscall.size(), r.syscall.data(), nr);
  }
  CHECK(verdict(prog, 1000) == kEperm, "an unknown syscall number is not EPERM");

  int clone_nr = sc::native_number("clone");
  const uint64_t thread_flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                                CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID |
                                CLONE_CHILD_CLEARTID;
  CHECK(verdict(prog, clone_nr, thread_flags) == kAllow, "pthread_create's clone refused");
  CHECK(verdict(prog, clone_nr, CLONE_VM | CLONE_VFORK | SIGCHLD) == kAllow, "vfork clone refused");
  CHECK(verdict(prog, clone_nr, SIGCHLD) == kAllow, "fork clone refused");
  for (uint64_t ns : {CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                      CLONE_NEWPID, CLONE_NEWNET}) {
    CHECK(verdict(prog, clone_nr, ns | SIGCHLD) == kEperm, "clone 0x%llx allowed",
          (unsigned long long)ns);
    CHECK(verdict(prog, clone_nr, ns | thread_flags | 0xffffffff'00000000ull) == kEperm,
          "clone 0x%llx with other bits allowed", (unsigned long long)ns);
  }

  int ioctl_nr = sc::native_number("ioctl");
  CHECK(verdict(prog, ioctl_nr, 0, 0x5401 /* TCGETS */) == kAllow, "TCGETS refused");
  CHECK(verdict(prog, ioctl_nr, 0, 0x541B /* FIONREAD */) == kAllow, "FIONREAD refused");
  for (uint64_t high : {0ull, 0x1'00000000ull, 0xffffffff'00000000ull, 0x80000000'00000000ull}) {
    CHECK(verdict(prog, ioctl_nr, 0, high | sc::kTIOCSTI) == kEperm, "TIOCSTI|0x%llx allowed",
          (unsigned long long)high);
    CHECK(verdict(prog, ioctl_nr, 0, high | sc::kTIOCLINUX) == kEperm, "TIOCLINUX|0x%llx allowed",
          (unsigned long long)high);
  }

  for (int nr : {sc::native_number("socket"), sc::native_number("socketpair")}) {
    CHECK(verdict(prog, nr, 1 /* AF_UNIX */) == kAllow, "AF_UNIX refused");
    CHECK(verdict(prog, nr, 0x1'00000001ull) == kAllow, "AF_UNIX with high bits refused");
    uint32_t want_inet = inet ? kAllow : kEperm;
    CHECK(verdict(prog, nr, 2 /* AF_INET */) == want_inet, "AF_INET inet=%d", inet);
    CHECK(verdict(prog, nr, 10 /* AF_INET6 */) == want_inet, "AF_INET6 inet=%d", inet);
    for (uint64_t fam : {16ull /* NETLINK */, 17ull /* PACKET */, 38ull /* ALG */,
                         40ull /* VSOCK */, 0ull, 3ull /* AX25 */, 0x1'00000010ull})
      CHECK(verdict(prog, nr, fam) == kEperm, "family %llu allowed", (unsigned long long)fam);
  }

  int pers = sc::native_number("personality");
  for (uint64_t p : {0x0ull, 0x8ull, 0x20000ull, 0x20008ull, 0xffffffffull})
    CHECK(verdict(prog, pers, p) == kAllow, "personality 0x%llx refused", (unsigned long long)p);
  for (uint64_t p : {0x0040000ull /* ADDR_NO_RANDOMIZE */, 0x0400000ull /* READ_IMPLIES_EXEC */,
                     0x1ull, 0x1'00040000ull})
    CHECK(verdict(prog, pers, p) == kEperm, "personality 0x%llx allowed", (unsigned long long)p);

#if defined(__x86_64__)
  // x32 shares AUDIT_ARCH_X86_64 and sets bit 30 of the number (__X32_SYSCALL_BIT).
  for (int nr : {39 /* getpid */, 0 /* read */, 1 /* write */, 165 /* mount */, 512, 547})
    CHECK(verdict(prog, 0x40000000 | nr) == kKill, "x32 syscall %d not killed", nr);
  CHECK(verdict(prog, 20 /* i386 getpid */, 0, 0, AUDIT_ARCH_I386) == kKill, "i386 not killed");
  CHECK(verdict(prog, 0, 0, 0, AUDIT_ARCH_I386) == kKill, "i386 restart_syscall not killed");
  CHECK(verdict(prog, 39, 0, 0, AUDIT_ARCH_AARCH64) == kKill, "aarch64 not killed");
#endif
}

// Installs the program in a forked child and checks what the kernel answers.
void test_install(const std::vector<sock_filter>& prog) {
  pid_t pid = fork();
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(10);
    if (sc::install(prog.data(), static_cast<unsigned short>(prog.size())) != 0) _exit(11);
    if (syscall(SYS_getpid) != getpid()) _exit(12);
    if (syscall(SYS_mount, "none", "/nonexistent-warden", "tmpfs", 0, nullptr) != -1 ||
        errno != EPERM)
      _exit(13);
    if (syscall(SYS_unshare, CLONE_NEWUSER) != -1 || errno != EPERM) _exit(14);
#ifdef SYS_clone3
    if (syscall(SYS_clone3, nullptr, 0) != -1 || errno != ENOSYS) _exit(15);
#endif
    pid_t c = fork();  // glibc's fork: clone without namespace flags
    if (c < 0) _exit(16);
    if (c == 0) _exit(0);
    int st = 0;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st)) _exit(17);
    _exit(0);
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "installed filter: child status 0x%x", st);

  // Without no_new_privs, an unprivileged process cannot install a filter; root can. Either
  // way install() returns a status, never crashes.
  CHECK(sc::install(nullptr, 0) == -EINVAL, "install(nullptr) accepted");
}

}  // namespace

int main() {
  test_tables();
  test_low32_none_of();

  std::string err;
  std::vector<sock_filter> prog, prog_inet;
  int rc = sc::compile({}, &prog, &err);
  CHECK(rc == 0, "compile: %s", err.c_str());
  rc = sc::compile({.allow_inet = true}, &prog_inet, &err);
  CHECK(rc == 0, "compile inet: %s", err.c_str());
  if (!prog.empty() && !prog_inet.empty()) {
    test_program(prog, false);
    test_program(prog_inet, true);
    test_install(prog);

    std::vector<sock_filter> again;
    sc::compile({}, &again, &err);
    CHECK(again.size() == prog.size() &&
              std::memcmp(again.data(), prog.data(), prog.size() * sizeof(sock_filter)) == 0,
          "compile is not deterministic");

    const int rounds = 200;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < rounds; ++i) sc::compile({}, &again, &err);
    auto t1 = std::chrono::steady_clock::now();
    double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / rounds;
    std::printf("filter: %zu instructions (allow_inet: %zu), compile: %.0f us (mean of %d)\n",
                prog.size(), prog_inet.size(), us, rounds);
    // Instructions the kernel runs per call: the cost the filter adds to every syscall.
    size_t total = 0, worst = 0, n = 0, steps = 0;
    for (std::string_view name : sc::allowed()) {
      int nr = sc::native_number(name);
      if (nr < 0) continue;
      seccomp_data d{};
      d.nr = nr;
      d.arch = kNativeArch;
      run_bpf(prog, d, &steps);
      total += steps;
      worst = std::max(worst, steps);
      ++n;
    }
    seccomp_data d{};
    d.nr = sc::native_number("ioctl");
    d.arch = kNativeArch;
    d.args[1] = 0x5401;  // TCGETS
    size_t ioctl_steps = 0;
    run_bpf(prog, d, &ioctl_steps);
    d.args[1] = sc::kTIOCSTI;
    size_t tiocsti_steps = 0;
    run_bpf(prog, d, &tiocsti_steps);
    std::printf("executed per allowed call: mean %.1f, max %zu; ioctl TCGETS %zu, TIOCSTI %zu\n",
                n ? static_cast<double>(total) / n : 0.0, worst, ioctl_steps, tiocsti_steps);
  }
  return warden::testing::finish("seccomp_test");
}
