#include "jail/seccomp_policy.h"

#include <array>
#include <cerrno>

namespace warden::seccomp {

namespace {

using namespace std::string_view_literals;

// Docker's default allowlist (moby/profiles seccomp/default.json) for x86_64/aarch64, less what
// untrusted code has no use for and what has a record of kernel bugs; see denied() for each
// removal. Only names of 64-bit syscalls: 32-bit ABIs never reach the allowlist (they are killed).
constexpr std::array kAllowed = {
    "accept"sv, "accept4"sv, "access"sv, "alarm"sv, "arch_prctl"sv, "bind"sv, "brk"sv,
    "cachestat"sv, "capget"sv, "capset"sv, "chdir"sv, "chmod"sv, "chown"sv, "clock_getres"sv,
    "clock_gettime"sv, "clock_nanosleep"sv, "close"sv, "close_range"sv, "connect"sv,
    "copy_file_range"sv, "creat"sv, "dup"sv, "dup2"sv, "dup3"sv, "epoll_create"sv,
    "epoll_create1"sv, "epoll_ctl"sv, "epoll_pwait"sv, "epoll_pwait2"sv, "epoll_wait"sv,
    "eventfd"sv, "eventfd2"sv, "execve"sv, "execveat"sv, "exit"sv, "exit_group"sv, "faccessat"sv,
    "faccessat2"sv, "fadvise64"sv, "fallocate"sv, "fchdir"sv, "fchmod"sv, "fchmodat"sv,
    "fchmodat2"sv, "fchown"sv, "fchownat"sv, "fcntl"sv, "fdatasync"sv, "fgetxattr"sv,
    "flistxattr"sv, "flock"sv, "fork"sv, "fremovexattr"sv, "fsetxattr"sv, "fstat"sv, "fstatfs"sv,
    "fsync"sv, "ftruncate"sv, "futex"sv, "futex_requeue"sv, "futex_wait"sv, "futex_waitv"sv,
    "futex_wake"sv, "futimesat"sv, "get_robust_list"sv, "getcpu"sv, "getcwd"sv, "getdents"sv,
    "getdents64"sv, "getegid"sv, "geteuid"sv, "getgid"sv, "getgroups"sv, "getitimer"sv,
    "getpeername"sv, "getpgid"sv, "getpgrp"sv, "getpid"sv, "getppid"sv, "getpriority"sv,
    "getrandom"sv, "getresgid"sv, "getresuid"sv, "getrlimit"sv, "getrusage"sv, "getsid"sv,
    "getsockname"sv, "getsockopt"sv, "gettid"sv, "gettimeofday"sv, "getuid"sv, "getxattr"sv,
    "inotify_add_watch"sv, "inotify_init"sv, "inotify_init1"sv, "inotify_rm_watch"sv,
    "ioprio_get"sv, "ioprio_set"sv, "kill"sv, "landlock_add_rule"sv,
    "landlock_create_ruleset"sv, "landlock_restrict_self"sv, "lchown"sv, "lgetxattr"sv, "link"sv,
    "linkat"sv, "listen"sv, "listxattr"sv, "llistxattr"sv, "lremovexattr"sv, "lseek"sv,
    "lsetxattr"sv, "lstat"sv, "madvise"sv, "map_shadow_stack"sv, "membarrier"sv, "memfd_create"sv,
    "mincore"sv, "mkdir"sv, "mkdirat"sv, "mknod"sv, "mknodat"sv, "mlock"sv, "mlock2"sv,
    "mlockall"sv, "mmap"sv, "mprotect"sv, "mq_getsetattr"sv, "mq_notify"sv, "mq_open"sv,
    "mq_timedreceive"sv, "mq_timedsend"sv, "mq_unlink"sv, "mremap"sv, "mseal"sv, "msgctl"sv,
    "msgget"sv, "msgrcv"sv, "msgsnd"sv, "msync"sv, "munlock"sv, "munlockall"sv, "munmap"sv,
    "nanosleep"sv, "newfstatat"sv, "open"sv, "openat"sv, "openat2"sv, "pause"sv, "pidfd_open"sv,
    "pidfd_send_signal"sv, "pipe"sv, "pipe2"sv, "pkey_alloc"sv, "pkey_free"sv, "pkey_mprotect"sv,
    "poll"sv, "ppoll"sv, "prctl"sv, "pread64"sv, "preadv"sv, "preadv2"sv, "prlimit64"sv,
    "process_mrelease"sv, "pselect6"sv, "pwrite64"sv, "pwritev"sv, "pwritev2"sv, "read"sv,
    "readahead"sv, "readlink"sv, "readlinkat"sv, "readv"sv, "recvfrom"sv, "recvmmsg"sv,
    "recvmsg"sv, "removexattr"sv, "rename"sv, "renameat"sv, "renameat2"sv, "restart_syscall"sv,
    "rmdir"sv, "rseq"sv, "rt_sigaction"sv, "rt_sigpending"sv, "rt_sigprocmask"sv,
    "rt_sigqueueinfo"sv, "rt_sigreturn"sv, "rt_sigsuspend"sv, "rt_sigtimedwait"sv,
    "rt_tgsigqueueinfo"sv, "sched_get_priority_max"sv, "sched_get_priority_min"sv,
    "sched_getaffinity"sv, "sched_getattr"sv, "sched_getparam"sv, "sched_getscheduler"sv,
    "sched_rr_get_interval"sv, "sched_setaffinity"sv, "sched_setattr"sv, "sched_setparam"sv,
    "sched_setscheduler"sv, "sched_yield"sv, "seccomp"sv, "select"sv, "semctl"sv, "semget"sv,
    "semop"sv, "semtimedop"sv, "sendfile"sv, "sendmmsg"sv, "sendmsg"sv, "sendto"sv,
    "set_robust_list"sv, "set_tid_address"sv, "setfsgid"sv, "setfsuid"sv, "setgid"sv,
    "setgroups"sv, "setitimer"sv, "setpgid"sv, "setpriority"sv, "setregid"sv, "setresgid"sv,
    "setresuid"sv, "setreuid"sv, "setrlimit"sv, "setsid"sv, "setsockopt"sv, "setuid"sv,
    "setxattr"sv, "shmat"sv, "shmctl"sv, "shmdt"sv, "shmget"sv, "shutdown"sv, "sigaltstack"sv,
    "signalfd"sv, "signalfd4"sv, "splice"sv, "stat"sv, "statfs"sv, "statx"sv, "symlink"sv,
    "symlinkat"sv, "sync"sv, "sync_file_range"sv, "syncfs"sv, "sysinfo"sv, "tee"sv, "tgkill"sv,
    "time"sv, "timer_create"sv, "timer_delete"sv, "timer_getoverrun"sv, "timer_gettime"sv,
    "timer_settime"sv, "timerfd_create"sv, "timerfd_gettime"sv, "timerfd_settime"sv, "times"sv,
    "tkill"sv, "truncate"sv, "umask"sv, "uname"sv, "unlink"sv, "unlinkat"sv, "uretprobe"sv,
    "utime"sv, "utimensat"sv, "utimes"sv, "vfork"sv, "wait4"sv, "waitid"sv, "write"sv, "writev"sv,
};

constexpr std::string_view kMountApi =
    "mounts and the new mount API: leave the sandbox's file view";
constexpr std::string_view kNamespaces =
    "new namespaces: the kernel's largest unprivileged attack surface";
constexpr std::string_view kTracing = "reads or writes another process's memory";
constexpr std::string_view kKeys = "kernel keyring: shared with the host user, frequent CVEs";
constexpr std::string_view kKernelCode = "loads code or programs into the kernel";
constexpr std::string_view kUring = "io_uring: its operations are invisible to seccomp";
constexpr std::string_view kAio =
    "native AIO: its contexts come from one host-wide pool (fs.aio-max-nr) that one sandbox "
    "could drain for every process on the host";
constexpr std::string_view kTime =
    "sets host clocks; adjtimex/clock_adjtime read them too, which clock_gettime covers";
constexpr std::string_view kHost =
    "administers the host (accounting, quotas, swap, power, console)";
constexpr std::string_view kHandles = "file handles: open any inode of a mount, bypassing paths";
constexpr std::string_view kObsolete = "obsolete or niche, with a history of kernel bugs";
constexpr std::string_view kNuma = "NUMA placement of host memory";
constexpr std::string_view kLsm = "LSM attributes: Docker grants them only with CAP_SYS_ADMIN";
constexpr std::string_view kUnused = "i386 TLS calls and the never-implemented epoll_*_old";

constexpr std::array kDenied = {
    Denied{"mount"sv, kMountApi}, Denied{"umount"sv, kMountApi}, Denied{"umount2"sv, kMountApi},
    Denied{"pivot_root"sv, kMountApi}, Denied{"chroot"sv, kMountApi},
    Denied{"fsopen"sv, kMountApi}, Denied{"fsconfig"sv, kMountApi}, Denied{"fsmount"sv, kMountApi},
    Denied{"fspick"sv, kMountApi}, Denied{"open_tree"sv, kMountApi},
    Denied{"move_mount"sv, kMountApi}, Denied{"mount_setattr"sv, kMountApi},
    Denied{"open_tree_attr"sv, kMountApi},
    Denied{"unshare"sv, kNamespaces}, Denied{"setns"sv, kNamespaces},
    Denied{"ptrace"sv, kTracing}, Denied{"process_vm_readv"sv, kTracing},
    Denied{"process_vm_writev"sv, kTracing}, Denied{"process_madvise"sv, kTracing},
    Denied{"pidfd_getfd"sv, kTracing}, Denied{"kcmp"sv, kTracing},
    Denied{"keyctl"sv, kKeys}, Denied{"add_key"sv, kKeys}, Denied{"request_key"sv, kKeys},
    Denied{"bpf"sv, kKernelCode}, Denied{"perf_event_open"sv, kKernelCode},
    Denied{"kexec_load"sv, kKernelCode}, Denied{"kexec_file_load"sv, kKernelCode},
    Denied{"init_module"sv, kKernelCode}, Denied{"finit_module"sv, kKernelCode},
    Denied{"delete_module"sv, kKernelCode}, Denied{"create_module"sv, kKernelCode},
    Denied{"userfaultfd"sv,
           "stalls kernel page faults at will: the classic race-widener for exploits"},
    Denied{"io_uring_setup"sv, kUring}, Denied{"io_uring_enter"sv, kUring},
    Denied{"io_uring_register"sv, kUring},
    Denied{"io_setup"sv, kAio}, Denied{"io_submit"sv, kAio}, Denied{"io_getevents"sv, kAio},
    Denied{"io_pgetevents"sv, kAio}, Denied{"io_cancel"sv, kAio}, Denied{"io_destroy"sv, kAio},
    Denied{"open_by_handle_at"sv, kHandles}, Denied{"name_to_handle_at"sv, kHandles},
    Denied{"settimeofday"sv, kTime}, Denied{"clock_settime"sv, kTime},
    Denied{"clock_adjtime"sv, kTime}, Denied{"adjtimex"sv, kTime}, Denied{"stime"sv, kTime},
    Denied{"acct"sv, kHost}, Denied{"quotactl"sv, kHost}, Denied{"quotactl_fd"sv, kHost},
    Denied{"swapon"sv, kHost}, Denied{"swapoff"sv, kHost}, Denied{"reboot"sv, kHost},
    Denied{"syslog"sv, kHost}, Denied{"vhangup"sv, kHost}, Denied{"iopl"sv, kHost},
    Denied{"ioperm"sv, kHost}, Denied{"sethostname"sv, kHost}, Denied{"setdomainname"sv, kHost},
    Denied{"fanotify_init"sv, kHost}, Denied{"fanotify_mark"sv, kHost},
    Denied{"lookup_dcookie"sv, kHost},
    Denied{"lsm_get_self_attr"sv, kLsm}, Denied{"lsm_set_self_attr"sv, kLsm},
    Denied{"lsm_list_modules"sv, kLsm},
    Denied{"modify_ldt"sv, kObsolete}, Denied{"vmsplice"sv, kObsolete},
    Denied{"remap_file_pages"sv, kObsolete}, Denied{"uselib"sv, kObsolete},
    Denied{"_sysctl"sv, kObsolete}, Denied{"sysfs"sv, kObsolete}, Denied{"ustat"sv, kObsolete},
    Denied{"nfsservctl"sv, kObsolete}, Denied{"get_kernel_syms"sv, kObsolete},
    Denied{"query_module"sv, kObsolete}, Denied{"memfd_secret"sv, kObsolete},
    Denied{"mbind"sv, kNuma}, Denied{"set_mempolicy"sv, kNuma}, Denied{"get_mempolicy"sv, kNuma},
    Denied{"migrate_pages"sv, kNuma}, Denied{"move_pages"sv, kNuma},
    Denied{"set_mempolicy_home_node"sv, kNuma},
    Denied{"get_thread_area"sv, kUnused}, Denied{"set_thread_area"sv, kUnused},
    Denied{"epoll_ctl_old"sv, kUnused}, Denied{"epoll_wait_old"sv, kUnused},
};

constexpr std::string_view kNewer =
    "newer than the policy's review, with an older equivalent that is allowed; ENOSYS (not "
    "EPERM) makes callers fall back to it";

constexpr std::array kErrnoRules = {
    ErrnoRule{"clone3"sv, ENOSYS,
              "a filter cannot read clone3's flags (they are in memory); ENOSYS makes libc fall "
              "back to clone, whose flags it can"sv},
    ErrnoRule{"statmount"sv, ENOSYS, kNewer}, ErrnoRule{"listmount"sv, ENOSYS, kNewer},
    ErrnoRule{"setxattrat"sv, ENOSYS, kNewer}, ErrnoRule{"getxattrat"sv, ENOSYS, kNewer},
    ErrnoRule{"listxattrat"sv, ENOSYS, kNewer}, ErrnoRule{"removexattrat"sv, ENOSYS, kNewer},
    ErrnoRule{"file_getattr"sv, ENOSYS, kNewer}, ErrnoRule{"file_setattr"sv, ENOSYS, kNewer},
};

// x86_64 numbers from arch/x86/entry/syscalls/syscall_64.tbl, for names libseccomp 2.5.4 lacks
// (used only when libseccomp cannot resolve the name).
constexpr std::array kKnownNumbers = {
    KnownNumber{"uretprobe"sv, 335},        KnownNumber{"statmount"sv, 457},
    KnownNumber{"listmount"sv, 458},        KnownNumber{"lsm_get_self_attr"sv, 459},
    KnownNumber{"lsm_set_self_attr"sv, 460}, KnownNumber{"lsm_list_modules"sv, 461},
    KnownNumber{"mseal"sv, 462},            KnownNumber{"setxattrat"sv, 463},
    KnownNumber{"getxattrat"sv, 464},       KnownNumber{"listxattrat"sv, 465},
    KnownNumber{"removexattrat"sv, 466},    KnownNumber{"open_tree_attr"sv, 467},
    KnownNumber{"file_getattr"sv, 468},     KnownNumber{"file_setattr"sv, 469},
};

constexpr std::array kKilledArches = {"x86 (i386, int 0x80)"sv,
                                      "x32 (syscall numbers with bit 0x40000000)"sv};

constexpr std::array<uint32_t, 2> kRefusedIoctls = {kTIOCSTI, kTIOCLINUX};

// Harmless personality(2) values, as Docker allows: PER_LINUX, PER_LINUX32, UNAME26,
// PER_LINUX32|UNAME26 and 0xffffffff, the query. Anything else (ADDR_NO_RANDOMIZE,
// READ_IMPLIES_EXEC) weakens the process's own hardening.
constexpr std::array<uint64_t, 5> kPersonalities = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

}  // namespace

std::span<const std::string_view> allowed() { return kAllowed; }
std::span<const Denied> denied() { return kDenied; }
std::span<const ErrnoRule> errno_rules() { return kErrnoRules; }
std::span<const KnownNumber> known_numbers() { return kKnownNumbers; }
std::span<const std::string_view> killed_arches() { return kKilledArches; }

std::vector<ArgMatch> low32_none_of(unsigned arg, std::span<const uint32_t> values) {
  std::vector<ArgMatch> out;
  if (values.empty()) {
    out.push_back({arg, 0, 0});  // nothing refused: always allowed
    return out;
  }
  // Walk the binary trie of the refused values from bit 31 down. A value is not refused exactly
  // when, at some bit, its prefix leaves the trie: the bits above equal a refused value's and
  // this bit takes the branch no refused value takes. One rule per such missing branch.
  for (int bit = 31; bit >= 0; --bit) {
    uint32_t above = bit == 31 ? 0 : ~((2u << bit) - 1);
    uint32_t mask = above | (1u << bit);
    for (size_t i = 0; i < values.size(); ++i) {
      uint32_t prefix = values[i] & above;
      bool seen = false;
      for (size_t j = 0; j < i; ++j) seen = seen || (values[j] & above) == prefix;
      if (seen) continue;
      for (uint32_t branch : {0u, 1u << bit}) {
        bool taken = false;
        for (uint32_t v : values) taken = taken || (v & mask) == (prefix | branch);
        if (!taken) out.push_back({arg, mask, prefix | branch});
      }
    }
  }
  return out;
}

std::vector<ArgRule> arg_rules(const Options& opts) {
  std::vector<ArgRule> rules;
  rules.push_back({"clone"sv, {0, kCloneNamespaceMask, 0},
                   "threads and processes, without namespace flags"sv});
  for (uint64_t p : kPersonalities)
    rules.push_back({"personality"sv, {0, 0xffffffff, p},
                     "query or set a harmless execution domain"sv});
  for (const ArgMatch& m : low32_none_of(1, kRefusedIoctls))
    rules.push_back({"ioctl"sv, m, "any request but TIOCSTI and TIOCLINUX"sv});
  // The kernel reads the family as an int: compare the low 32 bits only.
  std::vector<uint64_t> families = {1};  // AF_UNIX
  if (opts.allow_inet) {
    families.push_back(2);   // AF_INET
    families.push_back(10);  // AF_INET6
  }
  for (uint64_t f : families) {
    rules.push_back({"socket"sv, {0, 0xffffffff, f},
                     opts.allow_inet ? "AF_UNIX, AF_INET and AF_INET6 only"sv : "AF_UNIX only"sv});
    rules.push_back({"socketpair"sv, {0, 0xffffffff, f},
                     opts.allow_inet ? "AF_UNIX, AF_INET and AF_INET6 only"sv : "AF_UNIX only"sv});
  }
  return rules;
}

}  // namespace warden::seccomp
