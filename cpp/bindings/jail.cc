// Binds the sandbox: converts a Python dict into a SpawnConfig, runs, converts the outcome
// back, and maps a failed set-up step to warden.SandboxSetupError. Nothing else.
#include <fcntl.h>
#include <poll.h>
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
#include "jail/request.h"
#include "jail/spawn.h"
#include "jail/supervise.h"

namespace py = pybind11;
using namespace warden::jail;
namespace jail = warden::jail;

namespace {

[[noreturn]] void raise_setup_error(const char* step, int err, const std::string& detail = {}) {
  py::object cls = py::module_::import("warden.errors").attr("SandboxSetupError");
  PyErr_SetObject(cls.ptr(), py::make_tuple(step, err, detail).ptr());
  throw py::error_already_set();
}

// Every key to_config reads. Any other key is refused rather than ignored: a misspelt or
// retired key would leave its setting at the default without anyone knowing.
constexpr const char* kConfigKeys[] = {
    "area_binds", "area_unmapped_ok", "cgroup_fd", "cgroup_procs", "cpu_time_s", "cwd", "disk_bytes", "file_size_bytes",
    "fork_mode", "hold_mount_ns", "host_id", "hostname", "init_path", "inside_id", "last_cap",
    "netns_fd",
    "open_files", "outside_base", "pass_fds", "ro_binds", "ro_paths", "seccomp", "writable",
};

void check_keys(const py::dict& d) {
  for (const auto& item : d) {
    bool known = false;
    if (py::isinstance<py::str>(item.first)) {
      std::string key = item.first.cast<std::string>();
      for (const char* k : kConfigKeys) known = known || key == k;
    }
    if (known) continue;
    std::string keys;
    for (const char* k : kConfigKeys) keys += std::string(keys.empty() ? "" : ", ") + k;
    throw py::value_error("the sandbox config has an unknown key " +
                          py::repr(item.first).cast<std::string>() +
                          "; remove it or use one of the known keys: " + keys);
  }
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
  check_keys(d);
  SpawnConfig cfg;
  cfg.cwd = get(d, "cwd", std::string("/workspace"));
  cfg.inside_id = get(d, "inside_id", 1000u);
  cfg.outside_base = get(d, "outside_base", 2000000000u);
  cfg.host_id = get(d, "host_id", 0u);
  if (cfg.host_id == 0 || cfg.host_id == cfg.outside_base) {
    throw py::value_error("host_id must be the sandbox's own host id (warden.host.identity)");
  }
  cfg.disk_bytes = get(d, "disk_bytes", uint64_t{64} << 20);
  cfg.open_files = get(d, "open_files", uint64_t{256});
  cfg.file_size_bytes = get(d, "file_size_bytes", uint64_t{0});
  cfg.cpu_time_s = get(d, "cpu_time_s", uint64_t{0});
  cfg.cgroup_procs = get(d, "cgroup_procs", std::vector<std::string>{});
  cfg.cgroup_fd = get(d, "cgroup_fd", -1);
  cfg.pass_fds = get(d, "pass_fds", std::vector<int>{});
  cfg.fork_mode = get(d, "fork_mode", false);
  cfg.area_unmapped_ok = get(d, "area_unmapped_ok", false);
  cfg.netns_fd = get(d, "netns_fd", -1);
  cfg.hold_mount_ns = get(d, "hold_mount_ns", false);
  cfg.init_fd = init_fd(d["init_path"].cast<std::string>());
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
  spec.area_binds = get(d, "area_binds", std::vector<std::pair<std::string, std::string>>{});
  spec.writable = get(d, "writable", std::vector<std::pair<std::string, unsigned>>{});
  spec.inside_id = cfg.inside_id;
  spec.hostname = get(d, "hostname", std::string("warden"));
  std::string what;
  int rc = mnt::plan_root(spec, &cfg, &what);
  if (rc < 0) raise_setup_error("plan-root", -rc, "cannot bind " + what);
  cfg.prepare();
  return cfg;
}

std::vector<std::string> strings(const py::handle& seq, const char* what) {
  std::vector<std::string> out;
  for (const py::handle& item : seq) {
    std::string v = py::cast<std::string>(item);
    if (v.find('\0') != std::string::npos) {
      throw py::value_error(std::string(what) + " must not contain NUL bytes");
    }
    out.push_back(std::move(v));
  }
  return out;
}

void close_fd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

py::dict outcome_dict(const Outcome& o, int mnt_ns, pid_t pid) {
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
  r["stdout_dropped"] = o.out_dropped;
  r["stderr_dropped"] = o.err_dropped;
  r["duration_s"] = o.duration_s;
  r["disk_free_bytes"] = o.status.have_disk ? py::object(py::int_(o.status.disk_free_bytes))
                                             : py::object(py::none());
  r["disk_total_bytes"] = o.status.have_disk ? py::object(py::int_(o.status.disk_total_bytes))
                                              : py::object(py::none());
  r["disk_full_at_kill"] = o.disk_full_at_kill;
  r["cpu_user_us"] = o.status.cpu_user_us;
  r["cpu_sys_us"] = o.status.cpu_sys_us;
  r["max_rss_kb"] = o.status.max_rss_kb;
  r["pid"] = pid;
  return r;
}

// A sandbox made whole ahead of its command: namespaces, root, limits, identity, seccomp,
// and an init waiting for one request. start() runs the command in it once; close() (or
// the destructor) kills and reaps it if it was never started.
class Prepared {
 public:
  explicit Prepared(const py::dict& d) {
    SpawnConfig cfg = to_config(d);
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) != 0) raise_setup_error("pipe", errno);
    if (pipe2(out, O_CLOEXEC) != 0) {
      int e = errno;
      close(in[0]);
      close(in[1]);
      raise_setup_error("pipe", e);
    }
    if (pipe2(err, O_CLOEXEC) != 0) {
      int e = errno;
      for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
      raise_setup_error("pipe", e);
    }
    cfg.stdin_fd = in[0];
    cfg.stdout_fd = out[1];
    cfg.stderr_fd = err[1];
    SpawnError error;
    bool in_child = false;
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = spawn(cfg, &child_, &error, &in_child);
    }
    // The sandbox has its own copies (or is gone): only the host's ends stay here.
    close(in[0]);
    close(out[1]);
    close(err[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    stderr_ = err[0];
    maker_ = getpid();
    if (rc < 0) {
      release_stdio();
      raise_setup_error(step_name(error.step), error.err);
    }
  }
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
  ~Prepared() { close_all(); }

  int pid() const { return child_.pid; }

  // Whether the init still waits: false once it was started, closed, or has died (killed
  // from outside; a sandbox found so is discarded, never started).
  bool ready() const {
    if (child_.request_fd < 0 || child_.pidfd < 0) return false;
    struct pollfd p = {child_.pidfd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
  }

  py::dict start(const py::sequence& argv, const py::sequence& env,
                 const py::sequence& exec_candidates, const std::string& cwd,
                 const py::object& input, double timeout_s, size_t cap) {
    if (child_.request_fd < 0) throw py::value_error("this sandbox was already started or closed");
    std::vector<std::string> args = strings(argv, "argv");
    if (args.empty()) throw py::value_error("argv must name a command");
    std::vector<std::string> paths = strings(exec_candidates, "exec_candidates");
    if (paths.empty()) paths.push_back(args[0]);
    if (cwd.empty() || cwd[0] != '/' || cwd.find('\0') != std::string::npos) {
      throw py::value_error("cwd must be an absolute path without NUL bytes");
    }
    std::string req = request::encode(cwd, paths, args, strings(env, "env"));
    std::string in = input.is_none() ? std::string() : input.cast<std::string>();
    Outcome o;
    SpawnError error;
    int rc;
    int mnt_ns = child_.mount_ns_fd;
    pid_t pid = child_.pid;
    {
      py::gil_scoped_release nogil;
      uint64_t deadline = 0;
      // The deadline counts from the request: the sandbox was whole before it.
      if (timeout_s > 0) deadline = monotonic_ns() + static_cast<uint64_t>(timeout_s * 1e9);
      rc = jail::start(&child_, req, &error);
      if (rc == 0) {
        child_.mount_ns_fd = -1;  // the caller's from here on
        rc = supervise(&child_, take(&stdin_), in, take(&stdout_), take(&stderr_), deadline,
                       cap, &o);
        if (rc < 0) error = {Step::kHandshake, -rc};
      } else {
        mnt_ns = -1;  // closed with the discarded sandbox
      }
    }
    if (rc < 0) {
      if (mnt_ns >= 0) close(mnt_ns);
      close_all();
      raise_setup_error(step_name(error.step), error.err);
    }
    return outcome_dict(o, mnt_ns, pid);
  }

  void close_all() {
    if (getpid() != maker_) {
      // A forked copy of the process that made the sandbox: it is not ours to kill.
      for (int* fd : {&child_.pidfd, &child_.status_fd, &child_.mount_ns_fd, &child_.request_fd,
                      &child_.report_fd}) {
        close_fd(fd);
      }
    } else if (child_.pidfd >= 0 || child_.request_fd >= 0) {
      py::gil_scoped_release nogil;
      discard(&child_);
    }
    release_stdio();
  }

 private:
  static int take(int* fd) {
    int v = *fd;
    *fd = -1;
    return v;
  }
  void release_stdio() {
    close_fd(&stdin_);
    close_fd(&stdout_);
    close_fd(&stderr_);
  }

  Child child_;
  int stdin_ = -1, stdout_ = -1, stderr_ = -1;
  pid_t maker_ = -1;
};

// Fork mode, for the zygote: like os.fork(), but the child (the worker) comes back already
// inside a fresh sandbox (namespaces, root, identity, no capabilities, seccomp), under the
// sandbox's init. Returns (pid, pidfd, mount_ns_fd, status_fd) in the parent, all of the init
// (mount_ns_fd is -1 unless the config asks hold_mount_ns), and (0, -1, -1, -1) in the worker.
// The caller must be single-threaded, as for os.fork().
py::tuple fork_sandboxed(const py::dict& d, bool sibling) {
  py::dict copy(d);
  copy["fork_mode"] = true;
  SpawnConfig cfg = to_config(copy);
  cfg.sibling = sibling;
  Child child;
  SpawnError error;
  bool in_child = false;
  PyOS_BeforeFork();
  int rc = spawn(cfg, &child, &error, &in_child);
  if (in_child) {
    PyOS_AfterFork_Child();
    return py::make_tuple(0, -1, -1, -1);
  }
  PyOS_AfterFork_Parent();
  if (rc < 0) raise_setup_error(step_name(error.step), error.err);
  return py::make_tuple(child.pid, child.pidfd, child.mount_ns_fd, child.status_fd);
}

// The record a sandbox's init writes as it exits (FinalStatus), or None when it was killed
// first; TimeoutError when the init still lives after timeout_s (negative: no bound).
py::object final_status(int fd, double timeout_s) {
  FinalStatus st{};
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = read_final_status(fd, timeout_s < 0 ? -1 : static_cast<int>(timeout_s * 1000), &st);
  }
  if (rc == -ETIMEDOUT) {
    PyErr_SetString(PyExc_TimeoutError, "the sandbox's init has not ended yet");
    throw py::error_already_set();
  }
  if (rc < 0) {
    errno = -rc;
    PyErr_SetFromErrno(PyExc_OSError);
    throw py::error_already_set();
  }
  if (rc == 0) return py::none();
  py::dict r;
  r["wait_status"] = st.wait_status;
  r["disk_free_bytes"] = st.have_disk ? py::object(py::int_(st.disk_free_bytes)) : py::none();
  r["disk_total_bytes"] = st.have_disk ? py::object(py::int_(st.disk_total_bytes)) : py::none();
  r["cpu_user_us"] = st.cpu_user_us;
  r["cpu_sys_us"] = st.cpu_sys_us;
  r["max_rss_kb"] = st.max_rss_kb;
  return r;
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
  m.def("fork_sandboxed", &fork_sandboxed, py::arg("config"), py::kw_only(),
        py::arg("sibling") = false,
        "Fork a worker into a fresh sandbox under its init: (pid, pidfd, mount_ns_fd, "
        "status_fd) of the init in the parent, (0, -1, -1, -1) in the worker. With sibling, "
        "the init is a child of the caller's parent.");
  m.def("final_status", &final_status, py::arg("status_fd"), py::arg("timeout_s"),
        "The record a sandbox's init writes as it exits, or None if it was killed first; "
        "TimeoutError if it still lives after timeout_s (negative: no bound).");
  py::class_<Prepared>(m, "PreparedSandbox",
                       "A sandbox made whole ahead of its command; started at most once.")
      .def(py::init<const py::dict&>(), py::arg("config"))
      .def_property_readonly("pid", &Prepared::pid)
      .def("ready", &Prepared::ready, "Whether the sandbox still waits for its command.")
      .def("start", &Prepared::start, py::arg("argv"), py::arg("env"),
           py::arg("exec_candidates"), py::arg("cwd") = std::string("/workspace"),
           py::arg("stdin") = py::none(), py::arg("timeout_s") = 0.0,
           py::arg("output_cap") = size_t{16} << 20,
           "Run the command in this sandbox and return its outcome (once).")
      .def("close", &Prepared::close_all, "Kill and reap the sandbox if it was never started.");
}
