// User namespace: the id maps (parent) and the identity changes (child).
#pragma once

#include <sys/types.h>

#include "jail/config.h"

namespace warden::jail::user {

// The calling thread's ids, as they were before become_owner.
struct Creator {
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
};

// Parent, just before clone: the calling thread (and only it: raw syscalls, credentials are
// per thread) takes cfg.host_id as its effective uid and gid. A new user namespace is owned by
// its creator's effective ids (user_namespaces(7)), and the kernel charges each namespace's
// per-user counts to its owner in the parent namespace (kernel/ucount.c): created by host
// root, every sandbox would spend root's budgets. The real and saved ids stay the host's, so
// restore_creator can take them back, and the file-system ids go back to the host's at once:
// what clone checks against files (CLONE_INTO_CGROUP) and the host paths the child opens
// before its own identity change are checked as before. Returns 0 or -errno (ids unchanged).
int become_owner(const SpawnConfig& cfg, Creator* saved);

// Parent, right after clone: the ids saved by become_owner. Returns 0 or -errno.
int restore_creator(const Creator& saved);

// Parent: writes /proc/<pid>/uid_map and gid_map. Returns 0 or -errno.
int init_ns_from_parent(pid_t pid, const SpawnConfig& cfg);

// Child, as the namespace's root, before anything of the sandbox runs: the user namespace's
// own limits (/proc/sys/user). A value there is the namespace's, and the kernel resolves it
// for the writer's namespace, so only a process inside can write it: the host, multithreaded,
// may not join it (setns(2)). No new namespaces (seccomp refuses them too) and few inotify
// instances and watches. Must come after the last namespace the set-up itself makes.
int limit_ns();

// Child, after the host-path binds: become inside root (mapped), so that what the rest of the
// set-up creates is owned by an id that exists in the namespace. Capabilities are kept: the
// kernel only clears them when leaving the namespace's root id (capabilities(7)).
int become_setup_root();

// Child, after set-up: drop supplementary groups and become the unprivileged sandbox user.
// Leaving inside root clears the permitted and effective sets.
int become_sandbox_user(const SpawnConfig& cfg);

}  // namespace warden::jail::user
