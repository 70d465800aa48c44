/* Installs a compiled seccomp program (raw struct sock_filter array read from a file) and execs
 * a command under it, as warden's child does as its last set-up step.
 *
 *   seccomp_exec FILTER_FILE CMD [ARGS...]
 *
 * Exit status 125 when the filter cannot be read or installed (the message says why). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s FILTER_FILE CMD [ARGS...]\n", argv[0]);
    return 125;
  }
  static struct sock_filter prog[BPF_MAXINSNS + 1];
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    fprintf(stderr, "seccomp_exec: open %s: %s\n", argv[1], strerror(errno));
    return 125;
  }
  size_t n = fread(prog, 1, sizeof prog, f);
  fclose(f);
  size_t insns = n / sizeof(struct sock_filter);
  if (n == 0 || n % sizeof(struct sock_filter) != 0 || insns > BPF_MAXINSNS) {
    fprintf(stderr, "seccomp_exec: %s: %zu bytes is not a seccomp program\n", argv[1], n);
    return 125;
  }
  struct sock_fprog fprog = {.len = (unsigned short)insns, .filter = prog};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    fprintf(stderr, "seccomp_exec: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
    return 125;
  }
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
    fprintf(stderr, "seccomp_exec: seccomp(SECCOMP_SET_MODE_FILTER): %s\n", strerror(errno));
    return 125;
  }
  execvp(argv[2], argv + 2);
  fprintf(stderr, "seccomp_exec: exec %s: %s\n", argv[2], strerror(errno));
  return 127;
}
