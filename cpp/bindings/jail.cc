// Binds the sandbox: converts a Python dict into a SpawnConfig, runs, converts the outcome
// back, and maps a failed set-up step to warden.SandboxSetupError. Nothing else.
#include <fcntl.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "jail/config.h"
#include "jail/mnt.h"
#include "jail/net.h"
#include "jail/spawn.h"
#include "jail/supervise.h"

namespace py = pybind11;
using namespace warden::jail;

namespace {

[[noreturn]] void raise_setup_error(const char* step, int err, const std::string& detail = {}) {
  py::object cls = py::module_::import("warden.errors").attr("SandboxSetupError");
  PyErr_SetObject(cls.ptr(), py::make_tuple(step, err, detail).ptr());
  throw py::error_already_set();
}

template <typename T>
T get(const py::dict& d, const char* key, T fallback) {
  if (!d.contains(key) || d[key].is_none()) return fallback;
  return d[key].cast<T>();
}

// warden-init, opened once per path: an O_PATH descriptor kept for the life of the process,
// exec'd by every exec-mode sandbox through execveat.
int init_fd(const std::string& path) {
  static std::string cached_path;
  static int cached_fd = -1;
  if (cached_fd >= 0 && cached_path == path) return cached_fd;
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) raise_setup_error("init", errno, "cannot open " + path);
  if (cached_fd >= 0) close(cached_fd);
  cached_fd = fd;
  cached_path = path;
  return fd;
}

SpawnConfig to_config(const py::dict& d) {
  SpawnConfig cfg;
  cfg.argv = d["argv"].cast<std::vector<std::string>>();
  if (cfg.argv.empty()) throw py::value_error("argv must name a command");
  cfg.env = get(d, "env", std::vector<std::string>{});
  cfg.exec_candidates = get(d, "exec_candidates", std::vector<std::string>{cfg.argv[0]});
  cfg.cwd = get(d, "cwd", std::string("/workspace"));
  cfg.inside_id = get(d, "inside_id", 1000u);
  cfg.outside_base = get(d, "outside_base", 2000000000u);
  cfg.disk_bytes = get(d, "disk_bytes", uint64_t{64} << 20);
  cfg.open_files = get(d, "open_files", uint64_t{256});
  cfg.file_size_bytes = get(d, "file_size_bytes", uint64_t{0});
  cfg.cpu_time_s = get(d, "cpu_time_s", uint64_t{0});
  cfg.cgroup_procs = get(d, "cgroup_procs", std::vector<std::string>{});
  cfg.cgroup_fd = get(d, "cgroup_fd", -1);
  cfg.pass_fds = get(d, "pass_fds", std::vector<int>{});
  cfg.fork_mode = get(d, "fork_mode", false);
  cfg.netns_fd = get(d, "netns_fd", -1);
  cfg.hold_mount_ns = get(d, "hold_mount_ns", false);
  if (!cfg.fork_mode) cfg.init_fd = init_fd(d["init_path"].cast<std::string>());
  cfg.last_cap = get(d, "last_cap", 40u);
  std::string prog = d["seccomp"].cast<std::string>();
  if (prog.empty() || prog.size() % sizeof(sock_filter) != 0 ||
      prog.size() / sizeof(sock_filter) > 0xffff) {
    throw py::value_error("seccomp must be a compiled classic BPF program");
  }
  cfg.seccomp.resize(prog.size() / sizeof(sock_filter));
  memcpy(cfg.seccomp.data(), prog.data(), prog.size());

  mnt::RootSpec spec;
  spec.ro_paths = get(d, "ro_paths", std::vector<std::string>{});
  spec.ro_binds = get(d, "ro_binds", std::vector<std::pair<std::string, std::string>>{});
  spec.writable = get(d, "writable", std::vector<std::pair<std::string, unsigned>>{});
  spec.inside_id = cfg.inside_id;
  spec.hostname = get(d, "hostname", std::string("warden"));
  std::string what;
  int rc = mnt::plan_root(spec, &cfg, &what);
  if (rc < 0) raise_setup_error("plan-root", -rc, "cannot bind " + what);
  cfg.prepare();
  return cfg;
}

struct Pipes {
  int fds[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
  ~Pipes() {
    for (auto& p : fds)
      for (int fd : p)
        if (fd >= 0) close(fd);
  }
  int take(int i, int end) {
    int fd = fds[i][end];
    fds[i][end] = -1;
    return fd;
  }
};

py::dict run(const py::dict& d, const py::object& input, double timeout_s, size_t cap) {
  SpawnConfig cfg = to_config(d);
  std::string in = input.is_none() ? std::string() : input.cast<std::string>();
  Pipes pipes;
  for (auto& p : pipes.fds) {
    if (pipe2(p, O_CLOEXEC) != 0) raise_setup_error("pipe", errno);
  }
  cfg.stdin_fd = pipes.fds[0][0];
  cfg.stdout_fd = pipes.fds[1][1];
  cfg.stderr_fd = pipes.fds[2][1];

  Child child;
  SpawnError error;
  Outcome o;
  bool in_child = false;
  int mnt_ns = -1;
  int rc;
  {
    py::gil_scoped_release nogil;
    uint64_t deadline = 0;
    // The deadline counts from before the clone: set-up time is part of the budget.
    if (timeout_s > 0) deadline = monotonic_ns() + static_cast<uint64_t>(timeout_s * 1e9);
    rc = spawn(cfg, &child, &error, &in_child);
    close(pipes.take(0, 0));
    close(pipes.take(1, 1));
    close(pipes.take(2, 1));
    if (rc == 0) {
      mnt_ns = child.mount_ns_fd;
      rc = supervise(&child, pipes.take(0, 1), in, pipes.take(1, 0), pipes.take(2, 0),
                     deadline, cap, &o);
      if (rc < 0) error = {Step::kHandshake, -rc};
    }
  }
  if (rc < 0) {
    if (mnt_ns >= 0) close(mnt_ns);
    raise_setup_error(step_name(error.step), error.err);
  }

  py::dict r;
  r["mount_ns_fd"] = mnt_ns;
  r["timed_out"] = o.timed_out;
  r["have_status"] = o.have_status;
  r["wait_status"] = o.status.wait_status;
  r["init_wait_status"] = o.init_wait_status;
  r["stdout"] = py::bytes(o.out);
  r["stderr"] = py::bytes(o.err);
  r["stdout_truncated"] = o.out_truncated;
  r["stderr_truncated"] = o.err_truncated;
  r["duration_s"] = o.duration_s;
  r["disk_free_bytes"] = o.status.have_disk ? py::object(py::int_(o.status.disk_free_bytes))
                                             : py::object(py::none());
  r["disk_total_bytes"] = o.status.have_disk ? py::object(py::int_(o.status.disk_total_bytes))
                                              : py::object(py::none());
  r["disk_full_at_kill"] = o.disk_full_at_kill;
  r["cpu_user_us"] = o.status.cpu_user_us;
  r["cpu_sys_us"] = o.status.cpu_sys_us;
  r["max_rss_kb"] = o.status.max_rss_kb;
  r["pid"] = child.pid;
  return r;
}

// Fork mode, for the zygote: like os.fork(), but the child comes back already inside a fresh
// sandbox (namespaces, root, identity, no capabilities, seccomp). Returns (pid, pidfd) in the
// parent and (0, -1) in the child. The caller must be single-threaded, as for os.fork().
py::tuple fork_sandboxed(const py::dict& d) {
  py::dict copy(d);
  copy["fork_mode"] = true;
  SpawnConfig cfg = to_config(copy);
  Child child;
  SpawnError error;
  bool in_child = false;
  PyOS_BeforeFork();
  int rc = spawn(cfg, &child, &error, &in_child);
  if (in_child) {
    PyOS_AfterFork_Child();
    return py::make_tuple(0, -1);
  }
  PyOS_AfterFork_Parent();
  if (rc < 0) raise_setup_error(step_name(error.step), error.err);
  return py::make_tuple(child.pid, child.pidfd);
}

int netns_create() {
  int fd;
  {
    py::gil_scoped_release nogil;
    fd = net::make_ns();
  }
  if (fd < 0) raise_setup_error("netns", -fd, "making a network namespace ahead of time");
  return fd;
}

}  // namespace

void bind_jail(py::module_& m) {
  m.def("netns_create", &netns_create,
        "A new network namespace with lo up, as a descriptor (the caller closes it).");
  m.def("fork_sandboxed", &fork_sandboxed, py::arg("config"),
        "Fork into a fresh sandbox: (pid, pidfd) in the parent, (0, -1) in the child.");
  m.def("run", &run, py::arg("config"), py::arg("stdin") = py::none(),
        py::arg("timeout_s") = 0.0, py::arg("output_cap") = size_t{16} << 20,
        "Run one command in a fresh sandbox described by `config`; return its outcome.");
}
