// The plan of the sandbox's root filesystem: which directories, files, links and mounts, in
// which order, under kStagingRoot.
//
// Pure: the plan asks what it needs to know of the host (whether a path is there, a
// directory, a link and to what) through a HostView, so that it can be built against any host
// and checked (mnt_plan_test.cc). mnt.h builds it against the real host and carries it out.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "jail/config.h"

namespace warden::jail::mnt {

struct RootSpec {
  // Host paths bound read-only at the same path inside (the Python installation, a plugin's
  // directory...). /usr, the /bin and /lib links and a few /etc files are always there.
  std::vector<std::string> ro_paths;
  // Host path -> sandbox path, read-only.
  std::vector<std::pair<std::string, std::string>> ro_binds;
  // warden's own host areas (directories in its private state directory, which the sandbox's
  // identity cannot reach on the host) -> sandbox path: attached as idmapped read-only clones
  // that the parent prepares (jail/idmap.h). Directories only.
  std::vector<std::pair<std::string, std::string>> area_binds;
  // Directories of the quota'd writable area: (sandbox path, mode). /tmp and /dev/shm are
  // always added; /workspace unless the caller names its own.
  std::vector<std::pair<std::string, unsigned>> writable;
  uint32_t inside_id = 1000;
  std::string hostname = "warden";
};

enum class PathKind { kDir, kSymlink, kOther };

// What the plan reads of the host, one call per syscall it stands for. Each returns 0 or
// -errno.
class HostView {
 public:
  virtual ~HostView() = default;
  // stat(2), following links.
  virtual int stat(const std::string& path, PathKind* kind) const = 0;
  // lstat(2): a link is kSymlink.
  virtual int lstat(const std::string& path, PathKind* kind) const = 0;
  // readlink(2) of a link.
  virtual int readlink(const std::string& path, std::string* target) const = 0;
};

// Fills cfg->mounts, cfg->writable, cfg->writable_at and cfg->writable_staging (replacing what
// they held), and the identity and hostname the generated /etc names. The host's /bin and
// /lib links are mirrored as links, its directories there bound. Returns 0, or -errno with
// *what naming the offending path (-E2BIG: more binds than the child has slots for).
int plan_root(const RootSpec& spec, const HostView& host, SpawnConfig* cfg, std::string* what);

}  // namespace warden::jail::mnt
