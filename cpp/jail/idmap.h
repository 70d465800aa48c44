// Idmapped host areas: how a sandbox reads warden's own host directories that its identity
// cannot reach on the host.
//
// warden keeps a sandbox's host-side directories (a read-only workspace, a plugin's files)
// in its private state directory: mode 0700, owned by warden's user, so that no other host
// user, sandboxes included, can traverse it. The sandbox sees such an area through a mount
// that the parent prepares as the host's root, before the clone:
//  - open_tree(OPEN_TREE_CLONE) makes a detached copy of the area's mount, reached through
//    the parent's credentials; the child never resolves the host path;
//  - mount_setattr(MOUNT_ATTR_IDMAP) maps the files' owner (warden's user) to the sandbox's
//    own host id, so they are the sandbox user's files inside, whatever their modes, and no
//    one else's; MOUNT_ATTR_RDONLY (with nosuid, nodev, private propagation) keeps them
//    read-only (mount_setattr(2)).
// The child moves the detached mount into its new root (move_mount(2)). Idmapped mounts need
// Linux 5.12 and a filesystem that supports them (tmpfs since 6.3); without them the sandbox
// does not start: (idmap, errno).
#pragma once

#include <sys/types.h>

#include "jail/config.h"

namespace warden::jail::idmap {

// The parent's prepared areas: one detached mount per kBindArea op, by slot. -1 when unused.
struct Areas {
  int fds[kMaxAreas];
  Areas() {
    for (int& fd : fds) fd = -1;
  }
  ~Areas() { close_all(); }
  Areas(const Areas&) = delete;
  Areas& operator=(const Areas&) = delete;
  void close_all();
};

// Parent, as the host's root: a user namespace whose one mapping is `from_uid`/`from_gid`
// (the owner of the areas' files) -> `to_id` (the sandbox's host id), as a descriptor.
// Made by a short-lived child that waits while the parent writes its maps. 0 or -errno.
int make_userns(uid_t from_uid, gid_t from_gid, uint32_t to_id, int* ns_fd);

// Parent, as the host's root, before the clone: the detached idmapped mounts of every
// kBindArea op of cfg, for cfg.host_id. Nothing is made for a config without areas. Returns
// 0, or -errno with nothing left open.
int prepare(const SpawnConfig& cfg, Areas* areas);

// Child, as the namespace's root: moves the detached mount `fd` onto `target` (made by the
// caller). Returns 0 or -errno.
int attach(int fd, const char* target);

}  // namespace warden::jail::idmap
