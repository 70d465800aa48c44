#include "jail/seccomp.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace warden::seccomp {

namespace {

struct CtxRelease {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxRelease>;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

int fail(std::string* err, int rc, std::string_view call, std::string_view what = {}) {
  if (err) {
    err->assign(call);
    if (!what.empty()) {
      err->append("(");
      err->append(what);
      err->append(")");
    }
    err->append(": ");
    err->append(strerror(-rc));
  }
  return rc;
}

// libseccomp resolves names for the native architecture; a name that exists only on other
// architectures resolves to a negative pseudo-number and is left out of the filter.
int resolve(std::string_view name) {
  std::string n(name);
  int nr = seccomp_syscall_resolve_name(n.c_str());
  if (nr != __NR_SCMP_ERROR) return nr;
  if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
    for (const KnownNumber& k : known_numbers())
      if (k.syscall == name) return k.x86_64;
  }
  return __NR_SCMP_ERROR;
}

int export_bpf(void* ctx, std::vector<sock_filter>* out, std::string* err) {
  // libseccomp 2.5 exports only to a descriptor; a memfd keeps the program off the filesystem.
  Fd mem;
  mem.fd = memfd_create("warden-seccomp", MFD_CLOEXEC);
  if (mem.fd < 0) return fail(err, -errno, "memfd_create");
  int rc = seccomp_export_bpf(ctx, mem.fd);
  if (rc < 0) return fail(err, rc, "seccomp_export_bpf");
  struct stat st;
  if (fstat(mem.fd, &st) < 0) return fail(err, -errno, "fstat", "seccomp memfd");
  size_t size = static_cast<size_t>(st.st_size);
  if (size == 0 || size % sizeof(sock_filter) != 0 ||
      size / sizeof(sock_filter) > BPF_MAXINSNS)
    return fail(err, -E2BIG, "seccomp_export_bpf", "program size");
  out->resize(size / sizeof(sock_filter));
  char* p = reinterpret_cast<char*>(out->data());
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(mem.fd, p + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(err, n < 0 ? -errno : -EIO, "pread", "seccomp memfd");
    done += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

int native_number(std::string_view name) {
  int nr = resolve(name);
  return nr < 0 ? -1 : nr;
}

int compile(const Options& opts, std::vector<sock_filter>* out, std::string* err) {
  out->clear();
  Ctx ctx(seccomp_init(SCMP_ACT_ERRNO(EPERM)));
  if (!ctx) return fail(err, -ENOMEM, "seccomp_init");
  // The context holds the native architecture only, so i386 and every other ABI fall to the
  // bad-arch action. x32 shares AUDIT_ARCH_X86_64; libseccomp sends its numbers (>= 0x40000000)
  // to the bad-arch action too when x32 is not in the filter (checked by seccomp_test).
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return fail(err, rc, "seccomp_attr_set", "SCMP_FLTATR_ACT_BADARCH=KILL_PROCESS");
  // warden sets no_new_privs itself, in the child, before install().
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) return fail(err, rc, "seccomp_attr_set", "SCMP_FLTATR_CTL_NNP=0");
  // A binary tree over syscall numbers instead of a linear list: about log2(n) comparisons per
  // call instead of n/2. libseccomp < 2.5 lacks the attribute; the linear filter is still right.
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0 && rc != -EINVAL && rc != -EOPNOTSUPP)
    return fail(err, rc, "seccomp_attr_set", "SCMP_FLTATR_CTL_OPTIMIZE=2");

  for (std::string_view name : allowed()) {
    int nr = resolve(name);
    if (nr < 0) continue;
    rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0);
    if (rc < 0) return fail(err, rc, "seccomp_rule_add", name);
  }
  for (const ErrnoRule& r : errno_rules()) {
    int nr = resolve(r.syscall);
    if (nr < 0) continue;
    rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(static_cast<uint16_t>(r.err)), nr, 0);
    if (rc < 0) return fail(err, rc, "seccomp_rule_add", r.syscall);
  }
  for (const ArgRule& r : arg_rules(opts)) {
    int nr = resolve(r.syscall);
    if (nr < 0) continue;
    scmp_arg_cmp cmp = {r.match.arg, SCMP_CMP_MASKED_EQ, r.match.mask, r.match.value};
    rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, nr, 1, &cmp);
    if (rc < 0) return fail(err, rc, "seccomp_rule_add", r.syscall);
  }
  return export_bpf(ctx.get(), out, err);
}

int install(const sock_filter* prog, unsigned short len) {
  if (prog == nullptr || len == 0) return -EINVAL;
  sock_fprog fprog;
  fprog.len = len;
  fprog.filter = const_cast<sock_filter*>(prog);
  // No SECCOMP_FILTER_FLAG_TSYNC: the child is single-threaded at this point. No
  // SECCOMP_FILTER_FLAG_SPEC_ALLOW: the kernel may keep its speculative-store-bypass mitigation.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) == 0) return 0;
  int e = errno;
  if (e == ENOSYS) {
    // Kernels before 3.17 have only the prctl(2) interface.
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) == 0) return 0;
    e = errno;
  }
  return -e;
}

}  // namespace warden::seccomp
