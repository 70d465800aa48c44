/* Hostile probes for warden's seccomp policy. Each probe makes one system call with arguments
 * that are harmless even without the filter (missing paths, bad descriptors, invalid flags), so
 * that an unfiltered control run, even as root, changes nothing on the host and answers with an
 * errno other than EPERM. Under the filter, a refused call answers EPERM.
 *
 *   seccomp_probes            run every probe, print "name rc errno" per line
 *   seccomp_probes i386       getpid through int 0x80 (the i386 ABI); prints "i386 <pid>"
 *   seccomp_probes x32        getpid with the x32 bit set; prints "x32 <rc> <errno>"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOPATH "/nonexistent-warden-probe"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

/* Runs fn in a forked child (for probes that would change the probing process itself when not
 * filtered) and returns what the call returned there; errno is carried back through a pipe. */
static long in_child(long (*fn)(void)) {
  int p[2];
  if (pipe(p) != 0) return -2;
  pid_t pid = fork();
  if (pid == 0) {
    long rc = fn();
    int res[2] = {(int)(rc < 0 ? -1 : rc > 0 ? 1 : 0), rc < 0 ? errno : 0};
    (void)!write(p[1], res, sizeof res);
    _exit(0);
  }
  close(p[1]);
  int res[2] = {-2, 0};
  (void)!read(p[0], res, sizeof res);
  close(p[0]);
  waitpid(pid, NULL, 0);
  errno = res[1];
  return res[0];
}

/* A raw clone(2) that behaves like fork: the child exits at once. */
static long clone_flags(unsigned long flags) {
  long rc = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (rc == 0) _exit(0);
  if (rc > 0) {
    int e = errno;
    waitpid((pid_t)rc, NULL, 0);
    errno = e;
  }
  return rc;
}

static long p_mount(void) { return syscall(SYS_mount, "none", NOPATH, "tmpfs", 0, NULL); }
static long p_umount2(void) { return syscall(SYS_umount2, NOPATH, 0); }
static long p_pivot_root(void) { return syscall(SYS_pivot_root, NOPATH "-a", NOPATH "-b"); }
static long p_unshare(void) { return syscall(SYS_unshare, 0x1 /* not a valid flag: EINVAL */); }
static long unshare_user(void) { return syscall(SYS_unshare, CLONE_NEWUSER); }
static long p_unshare_newuser(void) { return in_child(unshare_user); }
static long p_setns(void) { return syscall(SYS_setns, -1, 0); }
static long p_clone_newns(void) { return clone_flags(CLONE_NEWNS); }
static long p_clone_newuts(void) { return clone_flags(CLONE_NEWUTS); }
static long p_clone_newipc(void) { return clone_flags(CLONE_NEWIPC); }
static long p_clone_newuser(void) { return clone_flags(CLONE_NEWUSER); }
static long p_clone_newpid(void) { return clone_flags(CLONE_NEWPID); }
static long p_clone_newnet(void) { return clone_flags(CLONE_NEWNET); }
static long p_clone_newcgroup(void) { return clone_flags(CLONE_NEWCGROUP); }
static long p_clone_plain(void) { return clone_flags(0) > 0 ? 0 : -1; }
static long p_clone3(void) { return syscall(SYS_clone3, NULL, 0); }
/* statmount(2), Linux 6.8; x86_64 and the generic table share the number. */
static long p_statmount(void) { return syscall(457, NULL, NULL, 0, 0); }
static void *thread_fn(void *arg) { return arg; }
static long p_pthread(void) {
  pthread_t t;
  int rc = pthread_create(&t, NULL, thread_fn, NULL);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pthread_join(t, NULL) == 0 ? 0 : -1;
}
static long p_ptrace(void) { return syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 0x3fffffff, 0, 0); }
static long p_process_vm_readv(void) {
  return syscall(SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 0);
}
static long p_process_vm_writev(void) {
  return syscall(SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, 0);
}
static long p_keyctl(void) { return syscall(SYS_keyctl, 0xdead, 0, 0, 0, 0); }
static long p_add_key(void) { return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0); }
static long p_request_key(void) { return syscall(SYS_request_key, NULL, NULL, NULL, 0); }
static long p_bpf(void) { return syscall(SYS_bpf, 0xdead, NULL, 0); }
static long p_perf_event_open(void) { return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0); }
static long p_userfaultfd(void) { return syscall(SYS_userfaultfd, 0xdead0000); }
static long p_io_uring_setup(void) { return syscall(SYS_io_uring_setup, 0, NULL); }
static long p_io_uring_enter(void) { return syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0); }
static long p_io_uring_register(void) { return syscall(SYS_io_uring_register, -1, 0, NULL, 0); }
/* Native AIO with arguments the kernel rejects before touching anything (EINVAL). */
static long p_io_setup(void) { return syscall(SYS_io_setup, 0, NULL); }
static long p_io_submit(void) { return syscall(SYS_io_submit, 0, -1L, NULL); }
static long p_io_getevents(void) { return syscall(SYS_io_getevents, 0, -1L, 0, NULL, NULL); }
static long p_io_pgetevents(void) {
  return syscall(SYS_io_pgetevents, 0, -1L, 0, NULL, NULL, NULL);
}
static long p_io_cancel(void) { return syscall(SYS_io_cancel, 0, NULL, NULL); }
static long p_io_destroy(void) { return syscall(SYS_io_destroy, 0); }
static long p_kexec_load(void) { return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0080UL); }
static long p_kexec_file_load(void) {
  return syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0xdead0000UL);
}
static long p_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
static long p_finit_module(void) { return syscall(SYS_finit_module, -1, "", 0); }
static long p_delete_module(void) {
  return syscall(SYS_delete_module, "warden_no_such_module", O_NONBLOCK);
}
static long p_open_by_handle_at(void) { return syscall(SYS_open_by_handle_at, -1, NULL, 0); }
static long p_name_to_handle_at(void) {
  return syscall(SYS_name_to_handle_at, -1, NOPATH, NULL, NULL, 0);
}
static long p_fsopen(void) { return syscall(SYS_fsopen, "warden_no_such_fs", 0); }
static long p_fsconfig(void) { return syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0); }
static long p_fsmount(void) { return syscall(SYS_fsmount, -1, 0, 0); }
static long p_fspick(void) { return syscall(SYS_fspick, -1, NOPATH, 0); }
static long p_open_tree(void) { return syscall(SYS_open_tree, -1, NOPATH, 0); }
static long p_move_mount(void) { return syscall(SYS_move_mount, -1, NOPATH, -1, NOPATH "-b", 0); }
static long p_mount_setattr(void) { return syscall(SYS_mount_setattr, -1, NOPATH, 0, NULL, 0); }
static long p_clock_settime(void) { return syscall(SYS_clock_settime, CLOCK_REALTIME, NULL); }
static long p_settimeofday(void) {
  long tv[2] = {0, 2000000}; /* tv_usec out of range: EINVAL before anything is set */
  return syscall(SYS_settimeofday, tv, NULL);
}
static long p_clock_adjtime(void) { return syscall(SYS_clock_adjtime, CLOCK_REALTIME, NULL); }
static long p_adjtimex(void) { return syscall(SYS_adjtimex, NULL); }
static long p_acct(void) { return syscall(SYS_acct, NOPATH "/acct"); }
static long p_quotactl(void) { return syscall(SYS_quotactl, 0, NULL, 0, NULL); }
static long p_swapon(void) { return syscall(SYS_swapon, NOPATH, 0); }
static long p_swapoff(void) { return syscall(SYS_swapoff, NOPATH); }
static long p_reboot(void) { return syscall(SYS_reboot, 0, 0, 0, NULL); /* bad magic: EINVAL */ }
static long p_chroot(void) { return syscall(SYS_chroot, NOPATH); }
static long p_vmsplice(void) { return syscall(SYS_vmsplice, -1, NULL, 0, 0); }
static long p_sethostname(void) { return syscall(SYS_sethostname, "x", 100000); }

static long ioctl_devnull(unsigned long req) {
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -2;
  char c = 0;
  long rc = syscall(SYS_ioctl, fd, req, &c);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}
static long p_ioctl_tiocsti(void) { return ioctl_devnull(TIOCSTI); }
static long p_ioctl_tiocsti_high(void) { return ioctl_devnull(0x100000000UL | TIOCSTI); }
static long p_ioctl_tiocsti_allhigh(void) { return ioctl_devnull(0xffffffff00000000UL | TIOCSTI); }
static long p_ioctl_tioclinux(void) { return ioctl_devnull(TIOCLINUX); }
static long p_ioctl_tioclinux_high(void) { return ioctl_devnull(0x100000000UL | TIOCLINUX); }
static long p_ioctl_tcgets(void) { return ioctl_devnull(TCGETS); }
static long p_ioctl_fionread(void) {
  int p[2];
  if (pipe(p) != 0) return -2;
  int n = 0;
  long rc = ioctl(p[0], FIONREAD, &n);
  close(p[0]);
  close(p[1]);
  return rc;
}

static long sock(unsigned long family, int type) {
  long fd = syscall(SYS_socket, family, type | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    close((int)fd);
    return 0;
  }
  return fd;
}
static long p_socket_unix(void) { return sock(AF_UNIX, SOCK_STREAM); }
static long p_socket_inet(void) { return sock(AF_INET, SOCK_STREAM); }
static long p_socket_inet6(void) { return sock(AF_INET6, SOCK_DGRAM); }
static long p_socket_netlink(void) { return sock(AF_NETLINK, SOCK_RAW); }
static long p_socket_netlink_high(void) { return sock(0x100000000UL | AF_NETLINK, SOCK_RAW); }
static long p_socket_packet(void) { return sock(AF_PACKET, SOCK_RAW); }
static long p_socket_alg(void) { return sock(AF_ALG, SOCK_SEQPACKET); }
static long p_socket_vsock(void) { return sock(AF_VSOCK, SOCK_STREAM); }
static long pair(unsigned long family) {
  int sv[2];
  long rc = syscall(SYS_socketpair, family, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  if (rc == 0) {
    close(sv[0]);
    close(sv[1]);
  }
  return rc;
}
static long p_socketpair_unix(void) { return pair(AF_UNIX); }
static long p_socketpair_netlink(void) { return pair(AF_NETLINK); }

static long p_personality_query(void) {
  return syscall(SYS_personality, 0xffffffffUL) >= 0 ? 0 : -1;
}
static long personality_norandom(void) { return syscall(SYS_personality, ADDR_NO_RANDOMIZE); }
static long p_personality_norandom(void) { return in_child(personality_norandom); }
static long p_getpid(void) { return syscall(SYS_getpid) > 0 ? 0 : -1; }

struct probe {
  const char *name;
  long (*fn)(void);
};

#define P(n) {#n, p_##n}
static const struct probe probes[] = {
    P(mount), P(umount2), P(pivot_root), P(unshare), P(unshare_newuser), P(setns),
    P(clone_newns), P(clone_newuts), P(clone_newipc), P(clone_newuser), P(clone_newpid),
    P(clone_newnet), P(clone_newcgroup), P(clone_plain), P(clone3), P(statmount), P(pthread),
    P(ptrace),
    P(process_vm_readv), P(process_vm_writev), P(keyctl), P(add_key), P(request_key), P(bpf),
    P(perf_event_open), P(userfaultfd), P(io_uring_setup), P(io_uring_enter),
    P(io_uring_register), P(io_setup), P(io_submit), P(io_getevents), P(io_pgetevents),
    P(io_cancel), P(io_destroy), P(kexec_load), P(kexec_file_load), P(init_module), P(finit_module),
    P(delete_module), P(open_by_handle_at), P(name_to_handle_at), P(fsopen), P(fsconfig),
    P(fsmount), P(fspick), P(open_tree), P(move_mount), P(mount_setattr), P(clock_settime),
    P(settimeofday), P(clock_adjtime), P(adjtimex), P(acct), P(quotactl), P(swapon), P(swapoff),
    P(reboot), P(chroot), P(vmsplice), P(sethostname), P(ioctl_tiocsti), P(ioctl_tiocsti_high),
    P(ioctl_tiocsti_allhigh), P(ioctl_tioclinux), P(ioctl_tioclinux_high), P(ioctl_tcgets),
    P(ioctl_fionread), P(socket_unix), P(socket_inet), P(socket_inet6), P(socket_netlink),
    P(socket_netlink_high), P(socket_packet), P(socket_alg), P(socket_vsock),
    P(socketpair_unix), P(socketpair_netlink), P(personality_query), P(personality_norandom),
    P(getpid),
};

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 2 && strcmp(argv[1], "i386") == 0) {
    long ret;
    /* eax 20 is getpid in the i386 table; int 0x80 enters the kernel through the i386 ABI. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    printf("i386 %ld\n", ret);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "x32") == 0) {
    long rc = syscall(0x40000000L | SYS_getpid);
    printf("x32 %ld %d\n", rc, rc < 0 ? errno : 0);
    return 0;
  }
  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; ++i) {
    errno = 0;
    long rc = probes[i].fn();
    printf("%s %ld %d\n", probes[i].name, rc, rc < 0 ? errno : 0);
  }
  return 0;
}
