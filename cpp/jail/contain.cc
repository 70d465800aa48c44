// The ordered list of the child's set-up steps. Each step is one call, checked; the first
// failure is reported to the parent as (step, errno) and nothing runs.
//
// Order matters:
//  - host paths to bind are opened with the host credentials the child inherited, because
//    paths such as a Python under /root resolve only for the host's root; warden's own host
//    areas come ready-made from the parent (jail/idmap.h), as only it may idmap them;
//  - everything the set-up creates afterwards is made as the namespace's root, an id that is
//    mapped, so it can be handed to the sandbox user (chown needs a mapped owner);
//  - the user namespace's own limits are written once the set-up has made its last namespace,
//    before the new root hides the host's /proc;
//  - capabilities go last but one, after the identity change that empties them anyway;
//  - seccomp is installed last, so the set-up itself needs none of the calls it forbids.
#include "jail/contain.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>

#include "jail/caps.h"
#include "jail/cgroup.h"
#include "jail/fds.h"
#include "jail/mnt.h"
#include "jail/net.h"
#include "jail/rlimit.h"
#include "jail/seccomp.h"
#include "jail/user.h"
#include "jail/uts.h"

namespace warden::jail {

void report(int fd, Step step, int err) {
  Report r{static_cast<int32_t>(step), err};
  ssize_t n;
  do {
    n = write(fd, &r, sizeof r);
  } while (n < 0 && errno == EINTR);
}

namespace {

// The host may ignore or block signals (Python ignores SIGPIPE and SIGXFSZ); ignored
// dispositions and the mask survive execve, so they are reset here (signal(7)).
void reset_signals() {
  struct sigaction sa = {};
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

int wait_for_parent(int go) {
  char c;
  ssize_t n;
  do {
    n = read(go, &c, 1);
  } while (n < 0 && errno == EINTR);
  close(go);
  if (n == 1) return 0;
  return n == 0 ? -EPIPE : -errno;
}

#define WARDEN_STEP(s, call)  \
  do {                        \
    *step = (s);              \
    int rc_ = (call);         \
    if (rc_ < 0) return rc_;  \
  } while (0)

}  // namespace

int contain(const SpawnConfig& cfg, ChildFds* fds, Step* step) {
  reset_signals();
  WARDEN_STEP(Step::kWaitParent, wait_for_parent(fds->go));
  fds->go = -1;
  WARDEN_STEP(Step::kFds, fds::arrange(cfg, fds));
  int sources[kMaxBinds];
  int rc = mnt::open_sources(cfg, sources, step);
  if (rc < 0) return rc;
  WARDEN_STEP(Step::kIdentity, user::become_setup_root());
  // The last namespace the set-up makes; the user namespace's limits come after it and while
  // the host's /proc is still in view (the sandbox's own /proc/sys is read-only).
  WARDEN_STEP(Step::kCgroupNs, cgroup::init_ns());
  WARDEN_STEP(Step::kUserLimits, user::limit_ns());
  rc = mnt::setup_root(cfg, sources, fds->areas, step);
  if (rc < 0) return rc;
  WARDEN_STEP(Step::kHostname, uts::init_ns(cfg));
  // A namespace made ahead of time already has lo up, and belongs to the host's user
  // namespace, so it could not be changed from here anyway.
  if (cfg.netns_fd < 0) WARDEN_STEP(Step::kLoopback, net::init_ns());
  WARDEN_STEP(Step::kCaps, caps::drop_bounding(cfg.last_cap));
  WARDEN_STEP(Step::kIdentity, user::become_sandbox_user(cfg));
  WARDEN_STEP(Step::kCaps, caps::clear_all());
  // Set after the identity change, which clears it (prctl(2), PR_SET_PDEATHSIG).
  WARDEN_STEP(Step::kNoNewPrivs,
              prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0 ? 0 : -errno);
  WARDEN_STEP(Step::kNoNewPrivs, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : -errno);
  WARDEN_STEP(Step::kChdir, chdir(cfg.cwd.c_str()) == 0 ? 0 : -errno);
  WARDEN_STEP(Step::kRlimit, rlimit::limit_self(cfg));
  if (cfg.seccomp.empty()) {
    *step = Step::kSeccomp;
    return -EINVAL;
  }
  WARDEN_STEP(Step::kSeccomp, seccomp::install(cfg.seccomp.data(),
                                               static_cast<unsigned short>(cfg.seccomp.size())));
  *step = Step::kNone;
  return 0;
}

}  // namespace warden::jail
