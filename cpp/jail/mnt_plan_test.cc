// Unit test of the root's plan (mnt_plan.h) against made-up hosts: the order of the steps
// (every directory before what goes in it, the read-only binds after the writable area's
// mount points, writable directories inside a read-only bind after that bind), /dev, /etc and
// /proc, the host's /bin and /lib links mirrored, the bind slots, and the refusals.
#include "jail/mnt_plan.h"

#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "jail/config.h"
#include "testing/check.h"

namespace warden::jail::mnt {
namespace {

// A host made of a table of paths. Paths not in it do not exist.
class FakeHost : public HostView {
 public:
  struct Entry {
    PathKind kind = PathKind::kDir;
    std::string link;         // for a link: its target
    PathKind followed = PathKind::kDir;  // for a link: what stat() finds at its end
    int err = 0;              // nonzero: every call on the path fails with -err
  };

  void dir(const std::string& p) { paths_[p] = Entry{PathKind::kDir, {}, PathKind::kDir, 0}; }
  void file(const std::string& p) { paths_[p] = Entry{PathKind::kOther, {}, PathKind::kOther, 0}; }
  void link(const std::string& p, const std::string& to, PathKind followed = PathKind::kDir) {
    paths_[p] = Entry{PathKind::kSymlink, to, followed, 0};
  }
  void broken(const std::string& p, int err) { paths_[p] = Entry{PathKind::kDir, {}, PathKind::kDir, err}; }
  void remove(const std::string& p) { paths_.erase(p); }
  // A link whose lstat works but whose readlink fails.
  void unreadable_link(const std::string& p, int err) {
    link(p, "");
    readlink_err_[p] = err;
  }

  int stat(const std::string& path, PathKind* kind) const override {
    auto it = paths_.find(path);
    if (it == paths_.end()) return -ENOENT;
    if (it->second.err) return -it->second.err;
    *kind = it->second.kind == PathKind::kSymlink ? it->second.followed : it->second.kind;
    return 0;
  }
  int lstat(const std::string& path, PathKind* kind) const override {
    auto it = paths_.find(path);
    if (it == paths_.end()) return -ENOENT;
    if (it->second.err) return -it->second.err;
    *kind = it->second.kind;
    return 0;
  }
  int readlink(const std::string& path, std::string* target) const override {
    auto it = paths_.find(path);
    if (it == paths_.end()) return -ENOENT;
    if (it->second.kind != PathKind::kSymlink) return -EINVAL;
    auto e = readlink_err_.find(path);
    if (e != readlink_err_.end()) return -e->second;
    *target = it->second.link;
    return 0;
  }

 private:
  std::map<std::string, Entry> paths_;
  std::map<std::string, int> readlink_err_;
};

// A host laid out as Debian's, merged /usr: /bin, /sbin and the /lib's are links into /usr.
FakeHost debian() {
  FakeHost h;
  h.dir("/usr");
  h.link("/bin", "usr/bin");
  h.link("/sbin", "usr/sbin");
  h.link("/lib", "usr/lib");
  h.link("/lib64", "usr/lib64");
  h.file("/etc/ld.so.cache");
  h.dir("/etc/alternatives");
  h.link("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC", PathKind::kOther);
  h.dir("/opt/py/lib");
  h.dir("/opt/py/bin");
  h.dir("/srv/plugin");
  h.file("/srv/config.txt");
  return h;
}

const char* kind_name(MountKind k) {
  switch (k) {
    case MountKind::kDir: return "Dir";
    case MountKind::kFile: return "File";
    case MountKind::kSymlink: return "Symlink";
    case MountKind::kBindRO: return "BindRO";
    case MountKind::kBindDev: return "BindDev";
    case MountKind::kTmpfs: return "Tmpfs";
    case MountKind::kProc: return "Proc";
    case MountKind::kMask: return "Mask";
    case MountKind::kReadOnly: return "ReadOnly";
    case MountKind::kRemountRO: return "RemountRO";
    case MountKind::kBindArea: return "BindArea";
    case MountKind::kDevpts: return "Devpts";
  }
  return "?";
}

// The sandbox path of a target: without the staging root.
std::string inside(const std::string& target) {
  std::string root = kStagingRoot;
  return target.compare(0, root.size(), root) == 0 ? target.substr(root.size()) : "!" + target;
}

// The index of the first op of that kind at that sandbox path, or -1.
int find(const SpawnConfig& cfg, MountKind kind, const std::string& path) {
  for (size_t i = 0; i < cfg.mounts.size(); ++i)
    if (cfg.mounts[i].kind == kind && cfg.mounts[i].target == kStagingRoot + path)
      return static_cast<int>(i);
  return -1;
}

// The first op of that kind at that sandbox path; a failed check and an empty op if none.
const MountOp& op(const SpawnConfig& cfg, MountKind kind, const std::string& path) {
  static const MountOp none{};
  int i = find(cfg, kind, path);
  CHECK(i >= 0, "no %s %s in the plan", kind_name(kind), path.c_str());
  return i >= 0 ? cfg.mounts[i] : none;
}

int count(const SpawnConfig& cfg, MountKind kind, const std::string& path) {
  int n = 0;
  for (const MountOp& op : cfg.mounts) n += op.kind == kind && op.target == kStagingRoot + path;
  return n;
}

const WritableDir* writable(const SpawnConfig& cfg, const std::string& path) {
  for (const WritableDir& w : cfg.writable)
    if (w.target == kStagingRoot + path) return &w;
  return nullptr;
}

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// What holds for every plan: targets under the staging root; each thing made in a directory
// that an earlier step made (a mkdir, a directory bind, a tmpfs, /proc); no read-only bind
// before the writable area; bind slots numbered in order; writable mount points made, and
// made after the bind they are inside.
void check_invariants(const SpawnConfig& cfg, const char* name) {
  std::map<std::string, size_t> dirs;  // sandbox path -> index of the step that made it
  dirs["/"] = 0;
  int slot = 0, area_slot = 0;
  for (size_t i = 0; i < cfg.mounts.size(); ++i) {
    const MountOp& op = cfg.mounts[i];
    std::string p = inside(op.target);
    CHECK(p[0] == '/', "%s: target %s is not under the staging root", name, op.target.c_str());
    bool mounts_over = op.kind == MountKind::kTmpfs || op.kind == MountKind::kProc ||
                       op.kind == MountKind::kMask || op.kind == MountKind::kReadOnly ||
                       op.kind == MountKind::kRemountRO || op.kind == MountKind::kDevpts;
    bool in_proc = p.compare(0, 6, "/proc/") == 0 && dirs.count("/proc");
    if (mounts_over) {
      // On something there already: /dev and /proc are made first; the masks are in /proc.
      CHECK(dirs.count(p) || dirs.count(parent_of(p)) || in_proc, "%s: %s %s on nothing", name,
            kind_name(op.kind), p.c_str());
    } else {
      CHECK(dirs.count(parent_of(p)), "%s: %s %s before its directory", name, kind_name(op.kind),
            p.c_str());
    }
    if (op.kind == MountKind::kDir || op.kind == MountKind::kTmpfs || op.kind == MountKind::kProc ||
        (op.kind == MountKind::kBindRO && op.is_dir) || op.kind == MountKind::kBindArea)
      dirs.emplace(p, i);
    CHECK(!((op.kind == MountKind::kBindRO || op.kind == MountKind::kBindArea) &&
            i < cfg.writable_at),
          "%s: read-only bind of %s before the writable area", name, p.c_str());
    bool bind = op.kind == MountKind::kBindRO || op.kind == MountKind::kBindDev;
    bool area = op.kind == MountKind::kBindArea;
    CHECK(op.source_index == (bind ? slot : area ? area_slot : -1), "%s: %s has slot %d", name,
          p.c_str(), op.source_index);
    if (bind) ++slot;
    if (area) ++area_slot;
  }
  CHECK(cfg.writable_at <= cfg.mounts.size(), "%s: writable_at %zu", name, cfg.writable_at);
  for (size_t k = 0; k < cfg.writable.size(); ++k) {
    const WritableDir& w = cfg.writable[k];
    std::string p = inside(w.target);
    CHECK(w.name == "d" + std::to_string(k), "%s: writable %s named %s", name, p.c_str(),
          w.name.c_str());
    auto made = dirs.find(p);
    CHECK(made != dirs.end(), "%s: writable %s has no mount point", name, p.c_str());
    if (made == dirs.end()) continue;
    // Mount points of the first binds exist when the child binds them, at writable_at.
    if (!w.late)
      CHECK(made->second < cfg.writable_at, "%s: writable %s made after the area", name, p.c_str());
    else
      CHECK(made->second >= cfg.writable_at, "%s: late writable %s made early", name, p.c_str());
  }
}

void test_default_layout() {
  FakeHost host = debian();
  RootSpec spec;
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  check_invariants(cfg, "default");

  // The whole plan, in order: phase A (/dev and the writable area's mount points), then the
  // read-only part from writable_at.
  std::vector<std::string> want = {
      "Dir /dev", "Tmpfs /dev", "BindDev /dev/null", "BindDev /dev/zero", "BindDev /dev/full",
      "BindDev /dev/random", "BindDev /dev/urandom", "BindDev /dev/tty", "Symlink /dev/fd",
      "Symlink /dev/stdin",
      "Symlink /dev/stdout", "Symlink /dev/stderr", "Dir /dev/pts", "Devpts /dev/pts",
      "Symlink /dev/ptmx", "Dir /dev/shm", "Dir /.rw",
      "Dir /workspace", "Dir /tmp",
      // writable_at
      "BindRO /usr", "Symlink /bin", "Symlink /sbin", "Symlink /lib", "Symlink /lib64",
      "Dir /etc", "File /etc/passwd", "File /etc/group", "File /etc/hostname", "File /etc/hosts",
      "File /etc/nsswitch.conf", "File /etc/resolv.conf", "BindRO /etc/ld.so.cache",
      "BindRO /etc/alternatives", "BindRO /etc/localtime", "Dir /proc", "Proc /proc",
      "ReadOnly /proc/bus", "ReadOnly /proc/fs", "ReadOnly /proc/irq", "ReadOnly /proc/sys",
      "Mask /proc/asound", "Mask /proc/acpi", "Mask /proc/kcore", "Mask /proc/keys",
      "Mask /proc/latency_stats", "Mask /proc/timer_list", "Mask /proc/timer_stats",
      "Mask /proc/sched_debug", "Mask /proc/scsi", "Mask /proc/sysrq-trigger", "Mask /proc/kmsg",
      "Mask /proc/config.gz", "Mask /proc/cmdline", "Mask /proc/kallsyms", "Mask /proc/modules",
      "Mask /proc/sys/kernel/random/boot_id"};
  std::vector<std::string> got;
  for (const MountOp& op : cfg.mounts) got.push_back(std::string(kind_name(op.kind)) + " " + inside(op.target));
  CHECK_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    CHECK(got[i] == want[i], "step %zu: %s, expected %s", i, got[i].c_str(), want[i].c_str());
  CHECK_EQ(cfg.writable_at, 19u);

  CHECK_EQ(cfg.writable.size(), 3u);
  if (cfg.writable.size() == 3) {
    CHECK_EQ(inside(cfg.writable[0].target), "/workspace");
    CHECK_EQ(cfg.writable[0].mode, 0755u);
    CHECK_EQ(inside(cfg.writable[1].target), "/tmp");
    CHECK_EQ(cfg.writable[1].mode, 01777u);
    CHECK_EQ(inside(cfg.writable[2].target), "/dev/shm");
    CHECK_EQ(cfg.writable[2].mode, 01777u);
  }
  CHECK_EQ(cfg.writable_staging, std::string(kStagingRoot) + "/.rw");
  CHECK_EQ(op(cfg, MountKind::kDir, "/.rw").mode, 0700u);
}

void test_dev() {
  FakeHost host = debian();
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(RootSpec{}, host, &cfg, &what), 0);
  const MountOp& tmpfs = op(cfg, MountKind::kTmpfs, "/dev");
  CHECK(tmpfs.data.find("size=64k") != std::string::npos, "/dev options %s", tmpfs.data.c_str());
  for (const char* n : {"null", "zero", "full", "random", "urandom", "tty"}) {
    int i = find(cfg, MountKind::kBindDev, std::string("/dev/") + n);
    CHECK(i >= 0, "/dev/%s not bound", n);
    if (i < 0) continue;
    CHECK_EQ(cfg.mounts[i].source, std::string("/dev/") + n);
    CHECK(!cfg.mounts[i].is_dir && cfg.mounts[i].mode == 0666, "/dev/%s", n);
  }
  CHECK_EQ(op(cfg, MountKind::kSymlink, "/dev/fd").data, "/proc/self/fd");
  CHECK_EQ(op(cfg, MountKind::kSymlink, "/dev/stderr").data, "/proc/self/fd/2");
  CHECK_EQ(op(cfg, MountKind::kDir, "/dev/shm").mode, 01777u);
  // A devpts instance of the sandbox's own, never the host's, and ptmx pointing into it.
  const MountOp& pts = op(cfg, MountKind::kDevpts, "/dev/pts");
  CHECK(pts.data.find("newinstance") != std::string::npos, "devpts options %s", pts.data.c_str());
  CHECK(pts.data.find("ptmxmode=0666") != std::string::npos, "devpts options %s",
        pts.data.c_str());
  CHECK_EQ(op(cfg, MountKind::kSymlink, "/dev/ptmx").data, "pts/ptmx");
  CHECK(find(cfg, MountKind::kBindDev, "/dev/ptmx") < 0, "the host's /dev/ptmx is bound");
}

void test_etc() {
  FakeHost host = debian();
  RootSpec spec;
  spec.inside_id = 1234;
  spec.hostname = "box";
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  auto content = [&](const char* path) {
    int i = find(cfg, MountKind::kFile, path);
    return i < 0 ? std::string("(none)") : cfg.mounts[i].data;
  };
  CHECK(content("/etc/passwd").find("\nsandbox:x:1234:1234:") != std::string::npos, "passwd: %s",
        content("/etc/passwd").c_str());
  CHECK(content("/etc/passwd").find("root:x:0:0:") == 0, "passwd starts with root");
  CHECK(content("/etc/group").find("\nsandbox:x:1234:\n") != std::string::npos, "group: %s",
        content("/etc/group").c_str());
  CHECK_EQ(content("/etc/hostname"), "box\n");
  CHECK(content("/etc/hosts").find("127.0.0.1\tlocalhost box\n") == 0, "hosts: %s",
        content("/etc/hosts").c_str());
  // Nothing of the host's name service: no resolver, files only.
  CHECK_EQ(content("/etc/resolv.conf"), "");
  CHECK_EQ(content("/etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files\n");
  for (const MountOp& op : cfg.mounts)
    if (op.kind == MountKind::kFile) CHECK(op.mode == 0644, "%s mode %o", op.target.c_str(), op.mode);
  CHECK_EQ(cfg.inside_id, 1234u);
  CHECK_EQ(cfg.hostname, "box");

  // The loader's cache, the alternatives and the time zone, as the host has them: optional
  // binds (the host may change under the sandbox), a directory or not as stat() says.
  int cache = find(cfg, MountKind::kBindRO, "/etc/ld.so.cache");
  CHECK(cache >= 0 && cfg.mounts[cache].optional && !cfg.mounts[cache].is_dir, "ld.so.cache");
  int alt = find(cfg, MountKind::kBindRO, "/etc/alternatives");
  CHECK(alt >= 0 && cfg.mounts[alt].optional && cfg.mounts[alt].is_dir, "alternatives");
  int tz = find(cfg, MountKind::kBindRO, "/etc/localtime");
  CHECK(tz >= 0 && !cfg.mounts[tz].is_dir, "localtime: a link to a file is a file bind");

  FakeHost bare = debian();
  bare.remove("/etc/ld.so.cache");
  bare.remove("/etc/alternatives");
  bare.remove("/etc/localtime");
  CHECK_EQ(plan_root(spec, bare, &cfg, &what), 0);
  CHECK_EQ(find(cfg, MountKind::kBindRO, "/etc/ld.so.cache"), -1);
  CHECK_EQ(find(cfg, MountKind::kBindRO, "/etc/alternatives"), -1);
  CHECK_EQ(find(cfg, MountKind::kBindRO, "/etc/localtime"), -1);
  check_invariants(cfg, "bare /etc");
}

void test_proc() {
  FakeHost host = debian();
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(RootSpec{}, host, &cfg, &what), 0);
  int dir = find(cfg, MountKind::kDir, "/proc"), proc = find(cfg, MountKind::kProc, "/proc");
  CHECK(dir >= 0 && proc > dir, "/proc made, then mounted");
  CHECK_EQ(cfg.mounts[dir].mode, 0555u);
  // Masked and read-only paths are optional: a kernel without them is no failure.
  for (const char* p : {"/proc/kcore", "/proc/keys", "/proc/sysrq-trigger", "/proc/timer_list",
                        "/proc/cmdline", "/proc/kallsyms", "/proc/sys/kernel/random/boot_id"}) {
    int i = find(cfg, MountKind::kMask, p);
    CHECK(i > proc && cfg.mounts[i].optional, "%s masked after /proc", p);
  }
  for (const char* p : {"/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"}) {
    int i = find(cfg, MountKind::kReadOnly, p);
    CHECK(i > proc && cfg.mounts[i].optional, "%s read-only after /proc", p);
  }
}

void test_writable_areas() {
  FakeHost host = debian();
  SpawnConfig cfg;
  std::string what;

  // A caller that names its writable directories gets no /workspace; /tmp and /dev/shm
  // always, once each, with the caller's mode when it names them.
  RootSpec spec;
  spec.writable = {{"/tmp", 0700}};
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  CHECK_EQ(cfg.writable.size(), 2u);
  CHECK(writable(cfg, "/workspace") == nullptr, "/workspace without being asked");
  CHECK(writable(cfg, "/tmp") && writable(cfg, "/tmp")->mode == 0700, "/tmp with its mode");
  CHECK(writable(cfg, "/dev/shm") != nullptr, "/dev/shm");
  CHECK_EQ(find(cfg, MountKind::kDir, "/workspace"), -1);
  check_invariants(cfg, "tmp only");

  spec.writable = {{"/work/a/b", 0750}, {"/dev/shm", 0700}, {"/work/a/c", 0755}};
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  CHECK_EQ(cfg.writable.size(), 4u);
  CHECK(writable(cfg, "/work/a/b") && writable(cfg, "/work/a/b")->mode == 0750, "/work/a/b");
  CHECK(writable(cfg, "/dev/shm") && writable(cfg, "/dev/shm")->mode == 0700, "/dev/shm mode");
  // Parents once each; /dev/shm is made with /dev, not again.
  CHECK_EQ(count(cfg, MountKind::kDir, "/work"), 1);
  CHECK_EQ(count(cfg, MountKind::kDir, "/work/a"), 1);
  CHECK_EQ(count(cfg, MountKind::kDir, "/dev/shm"), 1);
  check_invariants(cfg, "nested writable");
}

void test_writable_inside_a_bind() {
  FakeHost host = debian();
  RootSpec spec;
  spec.ro_binds = {{"/srv/plugin", "/plugin"}};
  spec.writable = {{"/workspace", 0755}, {"/plugin/data", 0700}, {"/pluginx/data", 0700}};
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  check_invariants(cfg, "inside a bind");
  // Its mount point is made in the bound directory, after the bind; it is bound late.
  const WritableDir* data = writable(cfg, "/plugin/data");
  CHECK(data && data->late, "/plugin/data is not late");
  int bind = find(cfg, MountKind::kBindRO, "/plugin");
  int dir = find(cfg, MountKind::kDir, "/plugin/data");
  CHECK(bind >= 0 && dir > bind, "/plugin/data made at %d, the bind at %d", dir, bind);
  CHECK_EQ(count(cfg, MountKind::kDir, "/plugin/data"), 1);
  CHECK_EQ(cfg.mounts[bind].source, "/srv/plugin");
  // A path that merely starts with the same letters is not inside.
  const WritableDir* other = writable(cfg, "/pluginx/data");
  CHECK(other && !other->late, "/pluginx/data is late");
  const WritableDir* ws = writable(cfg, "/workspace");
  CHECK(ws && !ws->late, "/workspace is late");
}

// warden's host areas: attached from a slot of their own, never looked at on the host (only
// the parent, as the host's root, may reach them), and a writable directory inside one is
// bound after it.
void test_areas() {
  FakeHost host = debian();
  RootSpec spec;
  spec.ro_binds = {{"/srv/plugin", "/code"}};
  spec.area_binds = {{"/run/warden/areas/x/ws", "/workspace"},
                     {"/run/warden/areas/x/plugins/ab", "/plugin"}};
  spec.writable = {{"/plugin/data", 0700}};
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  check_invariants(cfg, "areas");
  int ws = find(cfg, MountKind::kBindArea, "/workspace");
  int plugin = find(cfg, MountKind::kBindArea, "/plugin");
  CHECK(ws >= 0 && plugin > ws, "areas in the caller's order");
  CHECK_EQ(cfg.mounts[ws].source_index, 0);
  CHECK_EQ(cfg.mounts[plugin].source_index, 1);
  CHECK_EQ(cfg.mounts[plugin].source, "/run/warden/areas/x/plugins/ab");
  CHECK(find(cfg, MountKind::kBindRO, "/code") >= 0, "a plain bind stays a bind");
  CHECK_EQ(find(cfg, MountKind::kBindRO, "/workspace"), -1);
  const WritableDir* data = writable(cfg, "/plugin/data");
  CHECK(data && data->late, "/plugin/data inside an area is bound late");
  CHECK(find(cfg, MountKind::kDir, "/plugin/data") > plugin, "/plugin/data made in the area");

  spec.area_binds.clear();
  for (int i = 0; i <= kMaxAreas; ++i)
    spec.area_binds.push_back({"/run/a" + std::to_string(i), "/a" + std::to_string(i)});
  CHECK_EQ(plan_root(spec, host, &cfg, &what), -E2BIG);
  CHECK(what.find("host areas") != std::string::npos, "the refusal names areas: %s",
        what.c_str());
}

void test_read_only_paths() {
  FakeHost host = debian();
  RootSpec spec;
  spec.ro_paths = {"/opt/py/lib", "/opt/py/bin"};
  spec.ro_binds = {{"/srv/config.txt", "/plugin/config.txt"}, {"/srv/plugin", "/code"}};
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  check_invariants(cfg, "read-only paths");
  CHECK_EQ(count(cfg, MountKind::kDir, "/opt"), 1);
  CHECK_EQ(count(cfg, MountKind::kDir, "/opt/py"), 1);
  int lib = find(cfg, MountKind::kBindRO, "/opt/py/lib");
  CHECK(lib >= 0 && cfg.mounts[lib].source == "/opt/py/lib" && cfg.mounts[lib].is_dir, "lib");
  CHECK(find(cfg, MountKind::kBindRO, "/opt/py/bin") > lib, "the binds keep the caller's order");
  // A file bound elsewhere: its source is the host path, its target a file.
  int conf = find(cfg, MountKind::kBindRO, "/plugin/config.txt");
  CHECK(conf >= 0 && cfg.mounts[conf].source == "/srv/config.txt" && !cfg.mounts[conf].is_dir,
        "config.txt");
  CHECK(find(cfg, MountKind::kDir, "/plugin") >= 0, "/plugin made for the file bind");
  // None of these is optional: a path the caller asked for must be there.
  CHECK(!cfg.mounts[lib].optional && !cfg.mounts[conf].optional, "asked-for binds optional");
}

void test_host_layouts() {
  // /lib64 a real directory, /lib32 absent, /sbin a regular file: bound, skipped, skipped.
  FakeHost host = debian();
  host.dir("/lib64");
  host.file("/sbin");
  host.dir("/libx32");
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(RootSpec{}, host, &cfg, &what), 0);
  check_invariants(cfg, "host layouts");
  int lib64 = find(cfg, MountKind::kBindRO, "/lib64");
  CHECK(lib64 >= 0 && cfg.mounts[lib64].is_dir, "/lib64 bound");
  CHECK(find(cfg, MountKind::kBindRO, "/libx32") >= 0, "/libx32 bound");
  CHECK_EQ(find(cfg, MountKind::kSymlink, "/lib64"), -1);
  CHECK_EQ(find(cfg, MountKind::kSymlink, "/sbin"), -1);
  CHECK_EQ(find(cfg, MountKind::kBindRO, "/sbin"), -1);
  CHECK_EQ(find(cfg, MountKind::kSymlink, "/lib32"), -1);
  CHECK_EQ(find(cfg, MountKind::kBindRO, "/lib32"), -1);
  // The links are copied as they are, relative or absolute.
  CHECK_EQ(op(cfg, MountKind::kSymlink, "/bin").data, "usr/bin");
  CHECK_EQ(op(cfg, MountKind::kSymlink, "/lib").data, "usr/lib");
}

void test_refusals() {
  SpawnConfig cfg;
  std::string what;

  FakeHost no_usr = debian();
  no_usr.remove("/usr");
  CHECK_EQ(plan_root(RootSpec{}, no_usr, &cfg, &what), -ENOENT);
  CHECK_EQ(what, "/usr");

  FakeHost host = debian();
  RootSpec spec;
  spec.ro_paths = {"/opt/py/lib", "/no/such/path"};
  what.clear();
  CHECK_EQ(plan_root(spec, host, &cfg, &what), -ENOENT);
  CHECK_EQ(what, "/no/such/path");

  spec = RootSpec{};
  spec.ro_binds = {{"/no/such/source", "/plugin"}};
  CHECK_EQ(plan_root(spec, host, &cfg, &what), -ENOENT);
  CHECK_EQ(what, "/no/such/source");

  // Other errors come through as they are.
  FakeHost locked = debian();
  locked.broken("/srv/plugin", EACCES);
  spec = RootSpec{};
  spec.ro_paths = {"/srv/plugin"};
  CHECK_EQ(plan_root(spec, locked, &cfg, &what), -EACCES);
  CHECK_EQ(what, "/srv/plugin");

  FakeHost odd = debian();
  odd.unreadable_link("/lib", EIO);
  CHECK_EQ(plan_root(RootSpec{}, odd, &cfg, &what), -EIO);
  CHECK_EQ(what, "/lib");
}

void test_bind_slots() {
  FakeHost host = debian();
  SpawnConfig cfg;
  std::string what;
  CHECK_EQ(plan_root(RootSpec{}, host, &cfg, &what), 0);
  int fixed = 0;
  for (const MountOp& op : cfg.mounts)
    fixed += op.kind == MountKind::kBindRO || op.kind == MountKind::kBindDev;
  CHECK_EQ(fixed, 10);  // six devices, /usr, three /etc entries

  // Exactly as many binds as the child has descriptor slots for, then one more.
  RootSpec spec;
  for (int i = 0; fixed + i < kMaxBinds; ++i) {
    std::string p = "/opt/many/" + std::to_string(i);
    host.dir(p);
    spec.ro_paths.push_back(p);
  }
  CHECK_EQ(plan_root(spec, host, &cfg, &what), 0);
  check_invariants(cfg, "every slot");
  CHECK_EQ(op(cfg, MountKind::kBindRO, spec.ro_paths.back()).source_index,
           kMaxBinds - 1);
  host.dir("/opt/many/last");
  spec.ro_paths.push_back("/opt/many/last");
  CHECK_EQ(plan_root(spec, host, &cfg, &what), -E2BIG);
  CHECK_EQ(what, "more than 64 bind mounts");
}

void test_replanning() {
  // A plan replaces the one the config held; the same spec gives the same plan.
  FakeHost host = debian();
  RootSpec spec;
  spec.ro_paths = {"/opt/py/lib"};
  SpawnConfig a, b;
  std::string what;
  CHECK_EQ(plan_root(spec, host, &a, &what), 0);
  CHECK_EQ(plan_root(RootSpec{}, host, &b, &what), 0);
  CHECK_EQ(plan_root(spec, host, &b, &what), 0);
  CHECK_EQ(a.mounts.size(), b.mounts.size());
  CHECK_EQ(a.writable.size(), b.writable.size());
  CHECK_EQ(a.writable_at, b.writable_at);
  bool same = a.mounts.size() == b.mounts.size();
  for (size_t i = 0; same && i < a.mounts.size(); ++i)
    same = a.mounts[i].kind == b.mounts[i].kind && a.mounts[i].target == b.mounts[i].target &&
           a.mounts[i].source == b.mounts[i].source && a.mounts[i].data == b.mounts[i].data &&
           a.mounts[i].source_index == b.mounts[i].source_index;
  CHECK(same, "a second plan differs from the first");
}

}  // namespace
}  // namespace warden::jail::mnt

int main() {
  using namespace warden::jail::mnt;
  test_default_layout();
  test_dev();
  test_etc();
  test_proc();
  test_writable_areas();
  test_writable_inside_a_bind();
  test_read_only_paths();
  test_areas();
  test_host_layouts();
  test_refusals();
  test_bind_slots();
  test_replanning();
  return warden::testing::finish("mnt_plan_test");
}
