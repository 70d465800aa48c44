#include "jail/mnt_plan.h"

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

namespace warden::jail::mnt {

namespace {

// Docker's masked and read-only /proc paths (moby oci/defaults.go), the set container runtimes
// agree on: files that leak host state or accept writes that reach the host kernel.
const char* const kProcMasked[] = {
    "/proc/asound",   "/proc/acpi",      "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi",     "/proc/sysrq-trigger", "/proc/kmsg",     "/proc/config.gz",
    // Facts of the host, not of the sandbox, that no program needs to run: the kernel's
    // command line, its symbols and modules, and the id of this boot, which would tell two
    // sandboxes (two tenants) that they share a machine.
    "/proc/cmdline",  "/proc/kallsyms",  "/proc/modules",     "/proc/sys/kernel/random/boot_id",
};
const char* const kProcReadOnly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"};

// /dev/tty is the opener's own controlling terminal (tty(4)): in a sandbox, one of its own
// devpts or none (ENXIO), never a terminal of the host.
const char* const kDevNodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

void add(SpawnConfig* cfg, MountKind kind, std::string source, const std::string& target,
         std::string data = {}, unsigned mode = 0755, bool optional = false, bool is_dir = true) {
  MountOp op;
  op.kind = kind;
  op.source = std::move(source);
  op.target = std::string(kStagingRoot) + target;
  op.data = std::move(data);
  op.mode = mode;
  op.optional = optional;
  op.is_dir = is_dir;
  cfg->mounts.push_back(std::move(op));
}

// Adds the directories leading to `path` (not the path itself), once each.
void add_parents(SpawnConfig* cfg, const std::string& path, std::vector<std::string>* made) {
  for (size_t i = 1; i < path.size(); ++i) {
    if (path[i] != '/') continue;
    std::string dir = path.substr(0, i);
    bool seen = false;
    for (auto& m : *made) seen = seen || m == dir;
    if (seen) continue;
    made->push_back(dir);
    add(cfg, MountKind::kDir, {}, dir);
  }
}

int bind_ro(const HostView& host, SpawnConfig* cfg, const std::string& src,
            const std::string& dst, std::vector<std::string>* made, std::string* what) {
  PathKind kind;
  int rc = host.stat(src, &kind);
  if (rc < 0) {
    *what = src;
    return rc;
  }
  add_parents(cfg, dst, made);
  made->push_back(dst);
  add(cfg, MountKind::kBindRO, src, dst, {}, 0755, false, kind == PathKind::kDir);
  return 0;
}

// Gives every bind a descriptor slot, and every area one of its own; fails when there are
// more than the child can hold.
int number_sources(SpawnConfig* cfg, std::string* what) {
  int next = 0, area = 0;
  for (auto& op : cfg->mounts) {
    if (op.kind == MountKind::kBindArea) {
      if (area == kMaxAreas) {
        *what = "more than " + std::to_string(kMaxAreas) + " host areas";
        return -E2BIG;
      }
      op.source_index = area++;
      continue;
    }
    if (op.kind != MountKind::kBindRO && op.kind != MountKind::kBindDev) continue;
    if (next == kMaxBinds) {
      *what = "more than " + std::to_string(kMaxBinds) + " bind mounts";
      return -E2BIG;
    }
    op.source_index = next++;
  }
  return 0;
}

std::string etc_passwd(uint32_t id) {
  std::string s = "root:x:0:0:root:/:/usr/sbin/nologin\n";
  s += "sandbox:x:" + std::to_string(id) + ":" + std::to_string(id) + ":warden sandbox:/workspace:/bin/sh\n";
  s += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
  return s;
}

std::string etc_group(uint32_t id) {
  return "root:x:0:\nsandbox:x:" + std::to_string(id) + ":\nnogroup:x:65534:\n";
}

}  // namespace

int plan_root(const RootSpec& spec, const HostView& host, SpawnConfig* cfg, std::string* what) {
  cfg->mounts.clear();
  cfg->writable.clear();
  std::vector<std::string> made;

  // Phase A: /dev, and the mount points of the writable area.
  add(cfg, MountKind::kDir, {}, "/dev");
  made.push_back("/dev");
  add(cfg, MountKind::kTmpfs, {}, "/dev", "mode=0755,size=64k,nr_inodes=64,uid=0,gid=0");
  for (const char* n : kDevNodes) {
    add(cfg, MountKind::kBindDev, std::string("/dev/") + n, std::string("/dev/") + n, {}, 0666,
        false, false);
  }
  add(cfg, MountKind::kSymlink, {}, "/dev/fd", "/proc/self/fd");
  add(cfg, MountKind::kSymlink, {}, "/dev/stdin", "/proc/self/fd/0");
  add(cfg, MountKind::kSymlink, {}, "/dev/stdout", "/proc/self/fd/1");
  add(cfg, MountKind::kSymlink, {}, "/dev/stderr", "/proc/self/fd/2");
  // Terminals: a devpts of the sandbox's own (newinstance), so that its ptys are numbered
  // apart from the host's and no host terminal is reachable; /dev/ptmx is its multiplexer
  // (Documentation/filesystems/devpts.rst). ptmxmode=0666 lets the sandbox's user open it.
  add(cfg, MountKind::kDir, {}, "/dev/pts");
  add(cfg, MountKind::kDevpts, {}, "/dev/pts", "newinstance,ptmxmode=0666,mode=0620");
  add(cfg, MountKind::kSymlink, {}, "/dev/ptmx", "pts/ptmx");
  add(cfg, MountKind::kDir, {}, "/dev/shm", {}, 01777);

  // One tmpfs for every writable directory, so that /workspace, /tmp and /dev/shm share one
  // quota.
  std::vector<std::pair<std::string, unsigned>> writable = spec.writable;
  bool has_tmp = false, has_shm = false;
  for (auto& [p, m] : writable) {
    has_tmp = has_tmp || p == "/tmp";
    has_shm = has_shm || p == "/dev/shm";
  }
  if (writable.empty()) writable.emplace_back("/workspace", 0755);
  if (!has_tmp) writable.emplace_back("/tmp", 01777);
  if (!has_shm) writable.emplace_back("/dev/shm", 01777);
  add(cfg, MountKind::kDir, {}, "/.rw", {}, 0700);
  cfg->writable_staging = std::string(kStagingRoot) + "/.rw";
  // Targets inside a read-only bind (a plugin's data/ in its read-only directory) are made
  // after that bind, in phase C; the rest now.
  std::vector<std::string> late;
  for (auto& [src, dst] : spec.ro_binds) late.push_back(dst);
  for (auto& [src, dst] : spec.area_binds) late.push_back(dst);
  for (auto& p : spec.ro_paths) late.push_back(p);
  auto under_late = [&](const std::string& path) {
    for (auto& l : late) {
      if (path.size() > l.size() && path.compare(0, l.size(), l) == 0 && path[l.size()] == '/')
        return true;
    }
    return false;
  };
  int n = 0;
  for (auto& [path, mode] : writable) {
    if (path != "/dev/shm" && !under_late(path)) {
      add_parents(cfg, path, &made);
      made.push_back(path);
      add(cfg, MountKind::kDir, {}, path, {}, 0755);
    }
    cfg->writable.push_back({"d" + std::to_string(n++), std::string(kStagingRoot) + path, mode,
                             path != "/dev/shm" && under_late(path)});
  }
  cfg->writable_at = cfg->mounts.size();

  // Phase C (phase B, the writable area, is carried out by the child between the two):
  // /usr and the merged-/usr links (or directories, on hosts that still have them).
  int rc = bind_ro(host, cfg, "/usr", "/usr", &made, what);
  if (rc < 0) return rc;
  for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    PathKind kind;
    if (host.lstat(top, &kind) < 0) continue;
    if (kind == PathKind::kSymlink) {
      std::string target;
      rc = host.readlink(top, &target);
      if (rc < 0) {
        *what = top;
        return rc;
      }
      add(cfg, MountKind::kSymlink, {}, top, target);
    } else if (kind == PathKind::kDir) {
      rc = bind_ro(host, cfg, top, top, &made, what);
      if (rc < 0) return rc;
    }
  }

  // A generated /etc: only what programs need to start, nothing of the host's configuration.
  add(cfg, MountKind::kDir, {}, "/etc");
  made.push_back("/etc");
  add(cfg, MountKind::kFile, {}, "/etc/passwd", etc_passwd(spec.inside_id), 0644);
  add(cfg, MountKind::kFile, {}, "/etc/group", etc_group(spec.inside_id), 0644);
  add(cfg, MountKind::kFile, {}, "/etc/hostname", spec.hostname + "\n", 0644);
  add(cfg, MountKind::kFile, {}, "/etc/hosts",
      "127.0.0.1\tlocalhost " + spec.hostname + "\n::1\tlocalhost ip6-localhost\n", 0644);
  add(cfg, MountKind::kFile, {}, "/etc/nsswitch.conf",
      "passwd: files\ngroup: files\nhosts: files\n", 0644);
  add(cfg, MountKind::kFile, {}, "/etc/resolv.conf", "", 0644);
  // The dynamic loader's cache and Debian's alternatives links: read-only, harmless, and
  // without them many binaries do not start.
  for (const char* f : {"/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime"}) {
    PathKind kind;
    if (host.stat(f, &kind) < 0) continue;
    made.push_back(f);
    add(cfg, MountKind::kBindRO, f, f, {}, 0755, true, kind == PathKind::kDir);
  }

  for (auto& p : spec.ro_paths) {
    rc = bind_ro(host, cfg, p, p, &made, what);
    if (rc < 0) return rc;
  }
  for (auto& [src, dst] : spec.ro_binds) {
    rc = bind_ro(host, cfg, src, dst, &made, what);
    if (rc < 0) return rc;
  }
  for (auto& [src, dst] : spec.area_binds) {
    // Only the parent, as the host's root, can reach an area: the plan does not look at it.
    add_parents(cfg, dst, &made);
    made.push_back(dst);
    add(cfg, MountKind::kBindArea, src, dst);
  }
  // Writable targets inside a read-only bind: their mount point must already exist there.
  for (auto& [path, mode] : writable) {
    if (path != "/dev/shm" && under_late(path)) add(cfg, MountKind::kDir, {}, path, {}, 0755);
  }

  add(cfg, MountKind::kDir, {}, "/proc", {}, 0555);
  add(cfg, MountKind::kProc, {}, "/proc");
  for (const char* p : kProcReadOnly) add(cfg, MountKind::kReadOnly, {}, p, {}, 0, true);
  // After the read-only binds, whose recursive nodev would reach a mask below /proc/sys and
  // make its /dev/null unreadable instead of empty.
  for (const char* p : kProcMasked) add(cfg, MountKind::kMask, {}, p, {}, 0, true);

  cfg->inside_id = spec.inside_id;
  cfg->hostname = spec.hostname;
  return number_sources(cfg, what);
}

}  // namespace warden::jail::mnt
